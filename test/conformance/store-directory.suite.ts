import { describe, expect, it } from "vitest";
import type { Store } from "../../core/ports/store.js";
import { commit, commitOk, createStarted, type MakeStore } from "./store-fixtures.js";

/** The tenant key directory log: gap-free positions per tenant, tenant-scoped reads, paging. */
export function describeDirectoryConformance(name: string, makeStore: MakeStore): void {
  describe(`${name}: key directory`, () => {
    const withStore = async (body: (store: Store) => Promise<void>): Promise<void> => {
      const { store, cleanup } = await makeStore();
      try {
        await store.migrate();
        await body(store);
      } finally {
        await cleanup();
      }
    };

    it("appends at gap-free positions per tenant and reads back in order", () =>
      withStore(async (store) => {
        const append = (tenantId: string, kid: string) =>
          store.appendDirectory({
            tenantId,
            kind: "identity",
            kid,
            body: { token: `tok-${kid}`, publicJwk: { kty: "OKP", crv: "Ed25519", x: kid } },
            createdAt: 5,
          });
        expect(await append("t-a", "k1")).toBe(1);
        expect(await append("t-a", "k2")).toBe(2);
        expect(await append("t-b", "k9")).toBe(1);
        const positions = await Promise.all([append("t-a", "k3"), append("t-a", "k4"), append("t-a", "k5")]);
        expect([...positions].sort()).toEqual([3, 4, 5]);
        const entries = await store.readDirectory("t-a", 0, 100);
        expect(entries.map((e) => e.position)).toEqual([1, 2, 3, 4, 5]);
        expect(entries[0]).toEqual({
          tenantId: "t-a",
          position: 1,
          kind: "identity",
          kid: "k1",
          body: { token: "tok-k1", publicJwk: { kty: "OKP", crv: "Ed25519", x: "k1" } },
          createdAt: 5,
        });
        expect((await store.readDirectory("t-a", 2, 2)).map((e) => e.position)).toEqual([3, 4]);
        expect((await store.readDirectory("t-b", 0, 10)).map((e) => e.kid)).toEqual(["k9"]);
        expect(await store.readDirectory("t-c", 0, 10)).toEqual([]);
      }));
  });

  describe(`${name}: actor version`, () => {
    it("a commit that carries an agent version records it; one without keeps the stored version", async () => {
      const { store, cleanup } = await makeStore();
      try {
        await store.migrate();
        const actor = await createStarted(store, "t-v");
        const base = commit("t-v", actor.actorId, 1).actor;
        await commitOk(store, commit("t-v", actor.actorId, 1, { actor: { ...base, agentVersion: 2 } }));
        expect((await store.getActor("t-v", actor.actorId))?.agentVersion).toBe(2);
        await commitOk(store, commit("t-v", actor.actorId, 2));
        expect((await store.getActor("t-v", actor.actorId))?.agentVersion).toBe(2);
      } finally {
        await cleanup();
      }
    });
  });
}
