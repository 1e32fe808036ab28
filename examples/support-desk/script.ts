import type { ModelRequest } from "../../index.js";
import type { ScriptedReply } from "../../actors/models/index.js";

/**
 * The scripted model behind the example (no network): it answers by looking at the conversation,
 * so a call repeated after a crash gets the same answer.
 */
export function deskScript(request: ModelRequest): ScriptedReply {
  const tools = request.messages.filter((m) => m.role === "tool").map((m) => JSON.parse(m.content ?? "{}") as Record<string, unknown>);
  const ticket = request.messages.find((m) => m.role === "user")?.content ?? "";
  const orderId = /o-\d+/.exec(ticket)?.[0] ?? "o-1001";
  if (tools.length === 0) return { content: null, toolCalls: [{ name: "lookupOrder", arguments: { orderId } }] };
  if (tools.length === 1) {
    const order = tools[0] as { total: number };
    return { content: null, toolCalls: [{ name: "refund", arguments: { orderId, amount: order.total } }] };
  }
  const refund = tools[1] as { refundId?: string };
  return { content: `Your refund ${refund.refundId ?? ""} is on its way.` };
}
