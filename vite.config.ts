// Two builds from one config:
//   vite build                 the renderer: app/ → dist/app (base './', so the same
//                              files load from the Electron shell's app:// scheme, from
//                              file:// and from the web bridge)
//   vite build --mode preload  the Electron preload: main/electron/preload.ts → one
//                              CommonJS file, dist/main/electron/preload.cjs (sandboxed
//                              preloads cannot load ES modules or other files)

import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig, type UserConfig } from 'vite';

const root = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

const renderer: UserConfig = {
  root: root('./app'),
  base: './',
  plugins: [react()],
  publicDir: false,
  build: {
    outDir: root('./dist/app'),
    emptyOutDir: true,
    target: 'chrome130',
    sourcemap: true,
    // Everything is a file: the CSP allows no inline scripts, styles or data: fonts.
    assetsInlineLimit: 0,
  },
  server: { host: '127.0.0.1', strictPort: true },
};

const preload: UserConfig = {
  root: root('.'),
  publicDir: false,
  build: {
    outDir: root('./dist/main/electron'),
    emptyOutDir: false,
    target: 'node22',
    minify: false,
    sourcemap: false,
    lib: {
      entry: root('./main/electron/preload.ts'),
      formats: ['cjs'],
      fileName: () => 'preload.cjs',
    },
    rolldownOptions: {
      external: ['electron'],
    },
  },
};

export default defineConfig(({ mode }) => (mode === 'preload' ? preload : renderer));
