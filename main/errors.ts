// Errors a caller tells apart by `code`; their message is a sentence for the user.

export class CodedError<C extends string> extends Error {
  readonly code: C;
  constructor(code: C, message: string) {
    super(message);
    this.code = code;
  }
}
