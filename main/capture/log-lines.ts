// The collector's stderr arrives in pieces that need not end at a line break (Rust's
// unbuffered stderr writes one formatted message in several writes). This joins
// the pieces back into whole lines before they are logged.

export class LineJoiner {
  private partial = '';

  /** Whole lines completed by `chunk` (without their line break, blank ones dropped). */
  push(chunk: string): string[] {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    // A line that never ends is not held forever.
    if (this.partial.length > 16_384) {
      parts.push(this.partial);
      this.partial = '';
    }
    return parts.map((l) => l.trimEnd()).filter((l) => l.trim() !== '');
  }

  /** What is left when the stream ends. */
  end(): string[] {
    const rest = this.partial.trim();
    this.partial = '';
    return rest ? [rest] : [];
  }
}
