import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Store } from "../../core/ports/store.js";
import { newActor, type MakeStore } from "./store-fixtures.js";

/**
 * Kill switches of the `Store` port and the actor listing that finds the actors a switch halts
 * (by agent type, paged with a cursor). Every adapter runs it; each test gets a fresh store.
 *
 * @param name - the adapter, for test names
 * @param makeStore - makes an empty store (the suite calls `migrate()`)
 */
export function describeKillSwitchConformance(name: string, makeStore: MakeStore): void {
  describe(`${name}: kill switches`, () => {
    const ctx = {} as { store: Store };
    let cleanup: (() => Promise<void>) | undefined;
    beforeEach(async () => {
      const made = await makeStore();
      ctx.store = made.store;
      cleanup = made.cleanup;
      await ctx.store.migrate();
    });
    afterEach(async () => {
      await cleanup?.();
    });

    it("engages once per tenant and agent type, keeping the first reason, and lists them all", async () => {
      const { store } = ctx;
      expect(await store.listKillSwitches()).toEqual([]);
      expect(await store.engageKillSwitch({ tenantId: "acme", agentType: "refunder", reason: "runaway", engagedAt: 5 })).toEqual({
        created: true,
      });
      expect(await store.engageKillSwitch({ tenantId: "acme", agentType: "refunder", reason: "again", engagedAt: 9 })).toEqual({
        created: false,
      });
      await store.engageKillSwitch({ tenantId: "globex", agentType: "refunder", reason: "theirs", engagedAt: 7 });
      expect(await store.listKillSwitches()).toEqual([
        { tenantId: "acme", agentType: "refunder", reason: "runaway", engagedAt: 5 },
        { tenantId: "globex", agentType: "refunder", reason: "theirs", engagedAt: 7 },
      ]);
    });

    it("lists active actors of one type in creation order, page by page with a cursor", async () => {
      const { store } = ctx;
      const ids: string[] = [];
      for (let i = 0; i < 7; i++) {
        const actor = newActor("acme", {
          actorId: `a_${i}`,
          agentType: i % 2 === 0 ? "refunder" : "desk",
          createdAt: 1_000 + Math.floor(i / 2),
        });
        await store.createActor(actor);
        if (actor.agentType === "refunder") ids.push(actor.actorId);
      }
      await store.createActor(newActor("globex", { actorId: "a_0", agentType: "refunder" }));
      const seen: string[] = [];
      let after: { createdAt: number; actorId: string } | undefined;
      for (;;) {
        const page = await store.listActors("acme", {
          agentType: "refunder",
          status: "active",
          limit: 2,
          ...(after === undefined ? {} : { after }),
        });
        seen.push(...page.map((a) => a.actorId));
        if (page.length < 2) break;
        const last = page.at(-1)!;
        after = { createdAt: last.createdAt, actorId: last.actorId };
      }
      expect(seen).toEqual(ids);
      expect(await store.listActors("acme", { agentType: "nobody", limit: 10 })).toEqual([]);
    });
  });
}
