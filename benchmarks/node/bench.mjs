// Times aws-local-stepfunctions on the definitions benchmarks/workflows.py passes in.
// Usage: node bench.mjs <cases.json>   where cases.json is
//   [{"name", "definition", "input", "transitions", "seconds"}]
// Prints one JSON line per case: {"name", "executions", "seconds", "transitions_per_second"}.
import { readFileSync } from "node:fs";
import { StateMachine } from "aws-local-stepfunctions";

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));

for (const c of cases) {
  const sm = new StateMachine(c.definition);
  const once = async () => {
    const execution = sm.run(c.input);
    return execution.result;
  };
  for (let i = 0; i < 3; i++) await once(); // warm-up (JIT)
  let executions = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < c.seconds) {
    await once();
    executions += 1;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  console.log(
    JSON.stringify({
      name: c.name,
      executions,
      seconds: elapsed,
      transitions_per_second: (executions * c.transitions) / elapsed,
    }),
  );
}
