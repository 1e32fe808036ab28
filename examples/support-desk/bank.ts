import http from "node:http";

/** A bank the example owns: applies each refund once per Idempotency-Key and counts every call. */
export async function startBank(): Promise<{ url: string; calls: number; applied: Map<string, unknown>; close(): Promise<void> }> {
  const applied = new Map<string, unknown>();
  const state = { calls: 0 };
  const server = http.createServer((request, response) => {
    let body = "";
    request.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
    request.on("end", () => {
      state.calls += 1;
      const key = request.headers["idempotency-key"];
      if (request.method !== "POST" || typeof key !== "string") {
        response.writeHead(400).end();
        return;
      }
      const first = !applied.has(key);
      if (first) applied.set(key, JSON.parse(body) as unknown);
      response.writeHead(first ? 201 : 200, { "content-type": "application/json" });
      response.end(JSON.stringify({ refundId: `rf_${key.slice(-8)}`, applied: first }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    get calls() {
      return state.calls;
    },
    applied,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
