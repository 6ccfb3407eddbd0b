import type { Clock } from '../../src/clock.js'

/** A clock that moves only when a test says so. */
export class TestClock implements Clock {
  constructor(private ms = Date.UTC(2026, 10, 23, 12, 0, 0)) {}
  now(): number {
    return this.ms
  }
  advance(seconds: number): void {
    this.ms += seconds * 1000
  }
}
