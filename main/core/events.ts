// A small typed event bus for the events of the API contract.

import { EVENT_NAMES, type ApiEvents, type EventName } from '../api/contract.ts';

type Listener<E extends EventName> = (payload: ApiEvents[E]) => void;

export class EventBus {
  private readonly listeners = new Map<EventName, Set<Listener<EventName>>>();

  on<E extends EventName>(event: E, listener: Listener<E>): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener as Listener<EventName>);
    return () => set.delete(listener as Listener<EventName>);
  }

  /** Listens to every event; used by bridges that forward all of them. */
  onAny(listener: <E extends EventName>(event: E, payload: ApiEvents[E]) => void): () => void {
    const offs = EVENT_NAMES.map((e) => this.on(e, (p) => listener(e, p)));
    return () => offs.forEach((off) => off());
  }

  emit<E extends EventName>(event: E, payload: ApiEvents[E]): void {
    for (const l of this.listeners.get(event) ?? []) l(payload);
  }
}
