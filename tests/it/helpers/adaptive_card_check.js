// Checks a Microsoft Teams incoming-webhook message (JSON on stdin) with the
// Adaptive Cards library (npm `adaptivecards`, Microsoft's own parser): the
// card parses without warnings (unknown element or action types, bad
// versions), passes validateProperties, and every property relive sent
// survives the library's own serialization (a property it drops is one it
// does not know). Prints "ok" or the problems; exits 1 on a problem.
// scripts/test bundles it with esbuild (the package's CommonJS build does
// not load in Node 20 as shipped).
const AC = require("adaptivecards");

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const problems = [];
  const message = JSON.parse(input);
  if (message.type !== "message") problems.push(`type is ${message.type}, not message`);
  const attachments = message.attachments || [];
  if (attachments.length !== 1) problems.push(`${attachments.length} attachments, not 1`);
  for (const a of attachments) {
    if (a.contentType !== "application/vnd.microsoft.card.adaptive") {
      problems.push(`contentType ${a.contentType}`);
      continue;
    }
    const card = new AC.AdaptiveCard();
    const context = new AC.SerializationContext();
    card.parse(a.content, context);
    for (let i = 0; i < context.eventCount; i++) {
      problems.push(`parse: ${context.getEventAt(i).message}`);
    }
    for (const e of card.validateProperties().validationEvents) {
      problems.push(`validate: ${e.message}`);
    }
    const back = card.toJSON();
    const compare = (sent, kept, path) => {
      if (sent === null || typeof sent !== "object") return;
      for (const key of Object.keys(sent)) {
        if (Array.isArray(sent)) {
          compare(sent[key], kept && kept[key], `${path}[${key}]`);
        } else if (kept === undefined || !(key in kept)) {
          // Defaults are left out by toJSON: only flag values that differ from them.
          const isDefault = sent[key] === false || (key === "$schema");
          if (!isDefault) problems.push(`${path}.${key} is not an Adaptive Card property`);
        } else {
          compare(sent[key], kept[key], `${path}.${key}`);
        }
      }
    };
    compare(a.content, back, "card");
  }
  console.log(problems.length ? problems.join("\n") : "ok");
  process.exit(problems.length ? 1 : 0);
});
