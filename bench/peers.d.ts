// The parts of the peers' APIs the benches use, for packages that ship no types (@types/* would be
// one more dependency each for a constructor and a method).
declare module 'opossum' {
  export default class CircuitBreaker<T = unknown> {
    constructor(action: (...args: unknown[]) => Promise<T>, options?: { timeout?: number | false; errorThresholdPercentage?: number; resetTimeout?: number; volumeThreshold?: number });
    fire(...args: unknown[]): Promise<T>;
    shutdown(): void;
  }
}
