import { createMemoryStore } from "../../persistence/memory/index.js";
import { describeStoreConformance } from "./store.suite.js";

describeStoreConformance("memory", async () => {
  const store = createMemoryStore();
  return { store, cleanup: () => store.close() };
});
