/**
 * The time source. Everything that reads the time takes a `Clock`, so tests move time forward
 * instead of sleeping.
 *
 * @example const seconds = epochSeconds(clock)
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
}

export const systemClock: Clock = { now: () => Date.now() }

/** Whole seconds since the Unix epoch, the unit of JWT claims and of every stored timestamp. */
export function epochSeconds(clock: Clock): number {
  return Math.floor(clock.now() / 1000)
}
