/**
 * What an instance (or anyone outside) says is data, not text to trust: every string from a Sourcegraph instance is
 * bounded and stripped of control characters before it reaches a workflow's history, the status or a terminal. Pure:
 * imported by workflow code and the CLI.
 */

/** Longest string from an instance kept anywhere. */
export const MAX_INSTANCE_TEXT = 2000;

// C0 controls (incl. ESC), DEL, C1 controls, and the bidi overrides/isolates that reorder what a terminal shows.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * `text` as one line: whitespace controls (tab, newline, ...) become a space, every other control character is
 * dropped, and the result is cut to `max` characters (with `…`).
 */
export function sanitizeText(text: unknown, max: number = MAX_INSTANCE_TEXT): string {
  const s = typeof text === 'string' ? text : String(text);
  // Cut first so a hostile megabyte is not scanned twice; the marker makes the cut visible.
  const head = s.length > max * 2 ? s.slice(0, max * 2) : s;
  const clean = head.replace(/[\t\n\v\f\r]/g, ' ').replace(CONTROL, '');
  return clean.length > max || head.length < s.length ? `${clean.slice(0, Math.max(0, max - 1))}…` : clean;
}

/** Removes control characters (except newline and tab) from human CLI output, keeping its lines. */
export function stripControlChars(text: string): string {
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, ''); // eslint-disable-line no-control-regex
}
