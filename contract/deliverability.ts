/** Deliverability arithmetic shared by the bounce-alert workflow, its activities and the client. Pure. */

/**
 * The bounce rate used everywhere. SparkPost's own is bounces / targeted, but a bounce arrives after its injection,
 * so near a window's start bounces can outnumber the injections counted: the denominator never drops below what the
 * window saw accepted or bounced.
 */
export function bounceRateOf(f: { bounces: number; accepted: number; targeted: number }): number {
  const denominator = Math.max(f.targeted, f.accepted + f.bounces);
  return denominator > 0 ? f.bounces / denominator : 0;
}
