#!/usr/bin/env node
// Runs the TypeScript CLI with plain `node`, from any directory: tsx is resolved next to this file,
// not in the caller's working directory (which `node --import tsx` and `npx tsx` depend on).
import { register } from "tsx/esm/api";

register();
await import("./tessera.ts");
