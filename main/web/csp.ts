// The renderer's Content-Security-Policy, shared by the web bridge (HTTP header) and
// the Electron shell (header on its app:// protocol). No inline scripts or styles, no
// eval, no plugins, no framing, no form posts; network only to the app's own origin.

export function rendererCsp(opts: { connect?: readonly string[] } = {}): string {
  return [
    `default-src 'none'`,
    `script-src 'self'`,
    `style-src 'self'`,
    `img-src 'self' data:`,
    `font-src 'self'`,
    `connect-src ${["'self'", ...(opts.connect ?? [])].join(' ')}`,
    `base-uri 'none'`,
    `form-action 'none'`,
    `frame-ancestors 'none'`,
    `object-src 'none'`,
  ].join('; ');
}
