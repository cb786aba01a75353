/** hotpath's module handler for the queue benchmark: a no-op, like piscina's peer worker. */
export default function noop(): undefined {
  return undefined;
}
