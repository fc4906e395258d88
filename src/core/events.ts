// The event bus: lifecycle and operation events fanned out to websocket subscribers.
import { EventEmitter } from 'node:events';
import type { HangarEvent } from '../shared/schemas.js';

/** Publishes Hangar events to subscribers. */
export class EventBus {
  private readonly emitter = new EventEmitter();
  // Recent events, so a client connecting right after hangard starts still sees the reconciliation's drift reports.
  private readonly history: HangarEvent[] = [];
  private static readonly HISTORY = 512;

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  /** Publishes an event, stamping its time. */
  emit(event: Omit<HangarEvent, 'time'>): void {
    const full: HangarEvent = { time: new Date().toISOString(), ...event };
    this.history.push(full);
    if (this.history.length > EventBus.HISTORY) this.history.shift();
    this.emitter.emit('event', full);
  }

  /** The most recent events, oldest first. */
  recent(): HangarEvent[] {
    return [...this.history];
  }

  /** Subscribes; returns the unsubscribe function. */
  subscribe(fn: (e: HangarEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }
}
