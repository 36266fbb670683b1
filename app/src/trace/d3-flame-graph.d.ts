// The part of d3-flame-graph's API that the "where the time went" view uses (the
// package ships no types). See its README for the full API.

declare module 'd3-flame-graph' {
  import type { Selection } from 'd3-selection';

  export interface FlameNode<T> {
    data: T;
    value: number;
    depth: number;
    x0: number;
    x1: number;
    parent: FlameNode<T> | null;
  }

  export interface FlameGraph<T> {
    (selection: Selection<HTMLElement, T, null, undefined>): void;
    width(w: number): FlameGraph<T>;
    cellHeight(h: number): FlameGraph<T>;
    height(h: number): FlameGraph<T>;
    minHeight(h: number): FlameGraph<T>;
    transitionDuration(ms: number): FlameGraph<T>;
    selfValue(on: boolean): FlameGraph<T>;
    sort(on: boolean | ((a: FlameNode<T>, b: FlameNode<T>) => number)): FlameGraph<T>;
    inverted(on: boolean): FlameGraph<T>;
    minFrameSize(px: number): FlameGraph<T>;
    title(t: string): FlameGraph<T>;
    setLabelHandler(f: (d: FlameNode<T>) => string): FlameGraph<T>;
    setColorMapper(f: (d: FlameNode<T> & { highlight?: boolean }, original: string) => string): FlameGraph<T>;
    setDetailsElement(el: HTMLElement | null): FlameGraph<T>;
    onClick(f: (d: FlameNode<T>) => void): FlameGraph<T>;
    resetZoom(): void;
    destroy(): void;
  }

  export default function flamegraph<T>(): FlameGraph<T>;
}
