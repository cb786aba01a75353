/** An IPv4 address as a dual-stack socket reports it (`::ffff:1.2.3.4`) is compared as `1.2.3.4`. */
export function plainAddress(a: string): string {
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}
