// The view's own errors, for the error banner (STYLE §6: loud in the notebook, never thrown into the
// widget manager): a graph it cannot show, a handler that threw, and each malformed what-if trait
// (pending, history, diff) until that trait is fixed. guard() / guardTrait() run a handler and keep
// what it throws; `show` puts the banner in step (view.ts adds Python's `error` trait to it).

export class ViewErrors {
  /** A graph the view cannot show, or the last handler that threw ("" for none). */
  view = "";
  private readonly traits = new Map<string, string>();

  constructor(private readonly show: () => void) {}

  /** Run a handler; anything it throws goes to the error banner. */
  guard(fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.view = `gradsight view: ${message(e)}`;
      this.show();
    }
  }

  /** Like guard(), for the handler of one what-if trait: its error stays shown until it succeeds. */
  guardTrait(trait: string, fn: () => void): void {
    try {
      fn();
      if (this.traits.delete(trait)) this.show();
    } catch (e) {
      this.traits.set(trait, `gradsight view: ${message(e)}`);
      this.show();
    }
  }

  /** Every error of the view's own, one per line ("" for none). */
  text(): string {
    return [this.view, ...this.traits.values()].filter(Boolean).join("\n");
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
