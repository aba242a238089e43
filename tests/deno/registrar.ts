// node:test's describe and it for the shared suites, as Deno.test cases with the op and
// resource sanitizers on (under Deno, node:test's own it has none).
import type { Registrar } from "../listen/cases.ts";

const path: string[] = [];

/** Registers each shared case as its own sanitized `Deno.test`, named by its path. */
export const sanitized: Registrar = {
  describe(name, fn) {
    path.push(name);
    try {
      fn();
    } finally {
      path.pop();
    }
  },
  it(name, fn) {
    Deno.test({
      name: [...path, name].join(" > "),
      sanitizeOps: true,
      sanitizeResources: true,
      fn,
    });
  },
};
