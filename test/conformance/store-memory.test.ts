import { describe, expect, it } from "vitest";
import { ConfigError } from "../../core/errors.js";
import { createMemoryStore } from "../../persistence/memory/index.js";
import type { MakeStore } from "./store-fixtures.js";
import { describeKillSwitchConformance } from "./store-kill-switches.suite.js";
import { describeNodesConformance } from "./store-nodes.suite.js";
import { describeStoreConformance } from "./store.suite.js";

const makeStore: MakeStore = async () => {
  const store = createMemoryStore();
  return { store, cleanup: () => store.close() };
};

describeStoreConformance("memory", makeStore);
describeNodesConformance("memory", makeStore);
describeKillSwitchConformance("memory", makeStore);

describe("createMemoryStore", () => {
  it("is not shared unless told so, and refuses bad options with ConfigError", () => {
    expect(createMemoryStore().shared).toBe(false);
    expect(createMemoryStore({ shared: false }).shared).toBe(false);
    expect(createMemoryStore({ shared: true }).shared).toBe(true);
    expect(() => createMemoryStore({ shared: "yes" } as never)).toThrow(ConfigError);
    expect(() => createMemoryStore({ bogus: 1 } as never)).toThrow(ConfigError);
  });
});
