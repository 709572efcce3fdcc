// Reads a conformance run's output directory (one folder per scenario,
// each with checks.json) and prints one line per scenario. Fails when a
// scenario has no checks.json or when a scenario expected to pass has no
// SUCCESS check: a run that did nothing reports "Passed: 0/0" and must not
// count as green.
//   node summary.mjs <results-dir> <expected-failures.yml> <min-scenarios>
import fs from 'node:fs';
import path from 'node:path';

const [dir, expectedFile, minScenarios] = process.argv.slice(2);
const expected = new Set(
  fs.readFileSync(expectedFile, 'utf8')
    .split('\n')
    .map((l) => l.match(/^\s*-\s*(\S+)\s*$/)?.[1])
    .filter(Boolean),
);
const files = fs.globSync('**/checks.json', { cwd: dir }).sort();
let problems = 0;
let passed = 0;
for (const file of files) {
  // <scenario>-<timestamp>/checks.json; the timestamp is 24 characters.
  const scenario = path.dirname(file).replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, '');
  const checks = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
  const count = (s) => checks.filter((c) => c.status === s).length;
  const [ok, failed, warned] = [count('SUCCESS'), count('FAILURE'), count('WARNING')];
  const pass = ok > 0 && failed === 0 && warned === 0;
  if (pass) passed += 1;
  let note = '';
  if (!pass && !expected.has(scenario)) note = '  <- not in the expected failures';
  if (!expected.has(scenario) && ok === 0) {
    note = '  <- no SUCCESS check: the scenario did not run';
    problems += 1;
  }
  console.log(
    `${pass ? 'PASS' : 'FAIL'} ${scenario.padEnd(40)} ${ok} passed, ${failed} failed, ${warned} warnings${note}`,
  );
}
console.log(`scenarios: ${passed}/${files.length} passed`);
if (files.length < Number(minScenarios)) {
  console.error(`expected at least ${minScenarios} scenario results, found ${files.length}`);
  problems += 1;
}
process.exit(problems > 0 ? 1 : 0);
