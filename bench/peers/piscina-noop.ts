/** The peer's worker: piscina runs this for every task (a no-op, like hotpath's "noop"). */
export default function noop(): undefined {
  return undefined;
}
