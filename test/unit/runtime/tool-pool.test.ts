import { describe, it } from "vitest";
import { createInProcessBus, createInProcessTransport } from "../../../actors/transport/in-process/index.js";
import { runToolPoolScenario } from "../../shared/tool-pool-scenario.js";

describe("tool worker pools (in-process transport)", () => {
  it("runs each pooled call once in one member of the queue group, with the effect's idempotency key", async () => {
    const bus = createInProcessBus();
    await runToolPoolScenario(async () => createInProcessTransport({ bus, subjectPrefix: "pool-test" }));
  });
});
