import { randomUUID } from "node:crypto";
import { describe, it } from "vitest";
import { createNatsTransport } from "../../actors/transport/nats/index.js";
import { natsUrl } from "../helpers/services.js";
import { runToolPoolScenario } from "../shared/tool-pool-scenario.js";

describe("tool worker pools over NATS (queue groups)", () => {
  it("runs each pooled call once in one member of the queue group, with the effect's idempotency key", async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`;
    await runToolPoolScenario(() => createNatsTransport({ servers: natsUrl, subjectPrefix: prefix }));
  });
});
