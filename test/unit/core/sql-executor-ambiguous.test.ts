import { describe, expect, it } from "vitest";
import type { AgentError } from "../../../core/errors.js";
import { SqlExecutor, type SqlPool } from "../../../persistence/sql/transaction.js";

/** A pool of one fake connection whose statements answer as `answer` says; counts BEGINs. */
function fakePool(answer: (text: string) => Promise<{ rows: unknown[]; rowCount: number; command: string }>, pipeline: boolean) {
  const seen = { begins: 0, texts: [] as string[] };
  const client = {
    pipeline,
    on() {},
    off() {},
    release() {},
    query(config: string | { text: string }) {
      const text = typeof config === "string" ? config : config.text;
      seen.texts.push(text);
      if (text.startsWith("BEGIN")) seen.begins += 1;
      return answer(text);
    },
  };
  const pool = { connect: async () => client, end: async () => {} } as unknown as SqlPool;
  return { pool, seen };
}

const ok = (command: string) => Promise.resolve({ rows: [], rowCount: 0, command });
const cockroachAmbiguous = () => Promise.reject(Object.assign(new Error("result is ambiguous"), { code: "40003" }));
const retry = { attemptsMax: 5, baseDelayMs: 0, delayMsMax: 0 };

describe("SqlExecutor and CockroachDB's ambiguous results (40003)", () => {
  it.each([true, false])(
    "does not run a transaction again once its COMMIT went out and came back ambiguous (pipelining %s)",
    async (pipeline) => {
      const { pool, seen } = fakePool((text) => (text === "COMMIT" ? cockroachAmbiguous() : ok(text.split(" ")[0]!)), pipeline);
      const executor = new SqlExecutor(pool, retry);
      const error = (await executor
        .transaction("createActor", (session) => session.queryAll([{ text: "INSERT 1", values: [1] }], { commit: true }))
        .catch((e: unknown) => e)) as AgentError;
      expect(error.code).toBe("ERR_STORE_UNAVAILABLE");
      expect(error.details).toMatchObject({ sqlState: "40003", outcome: "unknown" });
      expect(seen.begins).toBe(1);
    },
  );

  it("does not run it again when the COMMIT is sent on its own after the work either", async () => {
    const { pool, seen } = fakePool((text) => (text === "COMMIT" ? cockroachAmbiguous() : ok(text.split(" ")[0]!)), false);
    const executor = new SqlExecutor(pool, retry);
    const error = (await executor
      .transaction("commitSteps", (session) => session.query("UPDATE 1", [1]))
      .catch((e: unknown) => e)) as AgentError;
    expect(error.code).toBe("ERR_STORE_UNAVAILABLE");
    expect(seen.begins).toBe(1);
  });

  it.each([true, false])("still retries a 40003 on a statement before the COMMIT (pipelining %s)", async (pipeline) => {
    let failures = 1;
    let aborted = false;
    const { pool, seen } = fakePool((text) => {
      if (text.startsWith("BEGIN")) aborted = false;
      if (text === "INSERT 1" && failures > 0) {
        failures -= 1;
        aborted = true;
        return cockroachAmbiguous();
      }
      // A COMMIT behind a failed statement is answered with ROLLBACK: nothing committed.
      if (text === "COMMIT") return ok(aborted ? "ROLLBACK" : "COMMIT");
      return ok(text.split(" ")[0]!);
    }, pipeline);
    const executor = new SqlExecutor(pool, retry);
    await executor.transaction("createActor", (session) => session.queryAll([{ text: "INSERT 1", values: [1] }], { commit: true }));
    expect(seen.begins).toBe(2);
    expect(executor.stats.retries).toBe(1);
    // Without pipelining the COMMIT of the failed attempt was never sent.
    expect(seen.texts.filter((t) => t === "COMMIT")).toHaveLength(pipeline ? 2 : 1);
  });

  it("does not run again a statement outside a transaction whose implicit commit came back ambiguous", async () => {
    const { pool, seen } = fakePool((text) => (text === "UPDATE 1" ? cockroachAmbiguous() : ok(text.split(" ")[0]!)), true);
    const executor = new SqlExecutor(pool, retry);
    const error = (await executor.single("renewNode", (session) => session.query("UPDATE 1", [1])).catch((e: unknown) => e)) as AgentError;
    expect(error.code).toBe("ERR_STORE_UNAVAILABLE");
    expect(error.details).toMatchObject({ outcome: "unknown" });
    expect(seen.texts.filter((t) => t === "UPDATE 1")).toHaveLength(1);
  });

  it("marks an unanswered COMMIT as an unknown outcome", async () => {
    const lost = () => Promise.reject(new Error("Connection terminated unexpectedly"));
    const { pool } = fakePool((text) => (text === "COMMIT" ? lost() : ok(text.split(" ")[0]!)), true);
    const executor = new SqlExecutor(pool, retry);
    const error = (await executor
      .transaction("commitSteps", (session) => session.queryAll([{ text: "UPDATE 1", values: [1] }], { commit: true }))
      .catch((e: unknown) => e)) as AgentError;
    expect(error.code).toBe("ERR_STORE_UNAVAILABLE");
    expect(error.details).toMatchObject({ outcome: "unknown" });
  });
});
