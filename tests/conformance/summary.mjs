// Reads a conformance run's output directory (one folder per scenario,
// each with checks.json) and prints one line per scenario. Fails when a
// scenario has no checks.json or when a scored scenario expected to pass
// has no SUCCESS check: a run that did nothing reports "Passed: 0/0" and
// must not count as green. Scenarios the requirement set runs but never
// scores (extensions, scenarios added after the revision was frozen: the
// "never scored" part of `conformance list --requirements REV`) are not
// scored by the runner, but we hold ourselves to them: one that fails and
// is not in the expected failures fails the run too (the six auth
// extensions are opt-in settings of the client, and pass).
//   node summary.mjs <results-dir> <expected-failures.yml> <min-scenarios> <list-output>
import fs from 'node:fs';
import path from 'node:path';

const [dir, expectedFile, minScenarios, listFile] = process.argv.slice(2);
const expected = new Set(
  fs.readFileSync(expectedFile, 'utf8')
    .split('\n')
    .map((l) => l.match(/^\s*-\s*(\S+)\s*$/)?.[1])
    .filter(Boolean),
);
// "Run and reported, but never scored:", then "    - name [client]" lines.
const list = fs.readFileSync(listFile, 'utf8');
const notScored = new Set();
const tail = list.split(/^Run and reported, but never scored:.*$/m)[1] ?? '';
for (const line of tail.split('\n')) {
  const m = line.match(/^\s+-\s+(\S+)\s+\[client\]\s*$/);
  if (m) notScored.add(m[1]);
}
const files = fs.globSync('**/checks.json', { cwd: dir }).sort();
let problems = 0;
let passed = 0;
let scored = 0;
for (const file of files) {
  // <scenario>-<timestamp>/checks.json; the timestamp is 24 characters.
  const scenario = path.dirname(file).replace(/-\d{4}-\d\d-\d\dT[\d-]+Z$/, '');
  const checks = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
  const count = (s) => checks.filter((c) => c.status === s).length;
  const [ok, failed, warned] = [count('SUCCESS'), count('FAILURE'), count('WARNING')];
  const pass = ok > 0 && failed === 0 && warned === 0;
  const counted = !notScored.has(scenario);
  if (counted) scored += 1;
  if (pass && counted) passed += 1;
  let note = '';
  if (!counted && !pass && !expected.has(scenario)) {
    note = '  (not scored) <- fails, and is not in the expected failures';
    problems += 1;
  } else if (!counted) note = '  (not scored)';
  else if (!pass && expected.has(scenario)) note = '  (expected failure)';
  else if (!pass) note = '  <- not in the expected failures';
  if (counted && !expected.has(scenario) && ok === 0) {
    note = '  <- no SUCCESS check: the scenario did not run';
    problems += 1;
  }
  console.log(
    `${pass ? 'PASS' : 'FAIL'} ${scenario.padEnd(40)} ${ok} passed, ${failed} failed, ${warned} warnings${note}`,
  );
}
console.log(`scored scenarios: ${passed}/${scored} passed (${files.length - scored} not scored)`);
if (files.length < Number(minScenarios)) {
  console.error(`expected at least ${minScenarios} scenario results, found ${files.length}`);
  problems += 1;
}
process.exit(problems > 0 ? 1 : 0);
