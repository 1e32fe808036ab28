import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * STYLE.md: imports point one way (identity → core; persistence → core; actors → identity, core;
 * core imports only zod and @opentelemetry/api) and each driver has one home.
 */
const root = path.resolve(import.meta.dirname, "../..");

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(root, dir))) {
    const relative = path.join(dir, entry);
    if (statSync(path.join(root, relative)).isDirectory()) out.push(...sourceFiles(relative));
    else if (entry.endsWith(".ts")) out.push(relative);
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(path.join(root, file), "utf8");
  return [
    ...text.matchAll(/^\s*(?:import|export)[^'"]*?from\s+["']([^"']+)["']/gm),
    ...text.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g),
  ].map((m) => m[1]!);
}

/** The top-level module a relative import lands in, or the package name of a bare import. */
function targetOf(file: string, specifier: string): { module?: string; pkg?: string } {
  if (specifier.startsWith("."))
    return { module: path.relative(root, path.resolve(root, path.dirname(file), specifier)).split(path.sep)[0] };
  if (specifier.startsWith("node:")) return { pkg: "node" };
  const parts = specifier.split("/");
  return { pkg: specifier.startsWith("@") ? `${parts[0]}/${parts[1]}` : parts[0] };
}

const allowedModules: Record<string, string[]> = {
  core: ["core"],
  identity: ["identity", "core"],
  persistence: ["persistence", "core"],
  actors: ["actors", "identity", "core"],
};

const driverHomes: Array<{ pkg: RegExp; home: string }> = [
  { pkg: /^pg$/, home: "persistence/" },
  { pkg: /^@electric-sql\/pglite$/, home: "persistence/" },
  { pkg: /^@nats-io\//, home: "actors/transport/nats/" },
  { pkg: /^jose$/, home: "identity/" },
  { pkg: /^xstate$/, home: "actors/" },
];

describe("architecture", () => {
  for (const [module, allowed] of Object.entries(allowedModules)) {
    it(`${module}/ imports only ${allowed.join(", ")} (and its allowed packages)`, () => {
      const violations: string[] = [];
      for (const file of sourceFiles(module)) {
        for (const specifier of importsOf(file)) {
          const target = targetOf(file, specifier);
          if (target.module !== undefined && !allowed.includes(target.module)) violations.push(`${file} → ${specifier}`);
          if (module === "core" && target.pkg !== undefined && !["zod", "@opentelemetry/api", "node"].includes(target.pkg))
            violations.push(`${file} → ${specifier}`);
        }
      }
      expect(violations).toEqual([]);
    });
  }

  it("each driver is imported only from its home", () => {
    const violations: string[] = [];
    for (const module of ["core", "identity", "persistence", "actors", "cli"]) {
      for (const file of sourceFiles(module)) {
        for (const specifier of importsOf(file)) {
          const { pkg } = targetOf(file, specifier);
          for (const driver of driverHomes)
            if (pkg !== undefined && driver.pkg.test(specifier) && !file.startsWith(driver.home)) violations.push(`${file} → ${specifier}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });

  it("no enums and no export * in source modules", () => {
    const violations: string[] = [];
    for (const module of ["core", "identity", "persistence", "actors"]) {
      for (const file of sourceFiles(module)) {
        const text = readFileSync(path.join(root, file), "utf8");
        if (/^\s*export (type )?\* from/m.test(text)) violations.push(`${file}: export *`);
        if (/^\s*(export )?(const )?enum /m.test(text)) violations.push(`${file}: enum`);
      }
    }
    expect(violations).toEqual([]);
  });
});
