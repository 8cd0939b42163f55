#!/usr/bin/env node
// gltf-validate.js FILE...: runs the Khronos glTF validator (npm
// gltf-validator, pinned in package-lock.json) on each GLB/glTF file, prints
// one summary line per file and every error, and exits 1 if any file has an
// error (warnings are printed but do not fail). Works offline.
'use strict';
const fs = require('fs');
const path = require('path');
const validator = require('gltf-validator');

async function main(files) {
  if (files.length === 0) {
    console.error('usage: gltf-validate.js FILE...');
    return 2;
  }
  let bad = 0;
  for (const file of files) {
    let report;
    try {
      report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
        uri: path.basename(file),
        maxIssues: 100,
      });
    } catch (e) {
      console.log(`${file}: cannot validate: ${e && e.message ? e.message : e}`);
      bad++;
      continue;
    }
    const i = report.issues;
    console.log(`${file}: errors=${i.numErrors} warnings=${i.numWarnings} ` +
                `infos=${i.numInfos} triangles=${report.info ? report.info.totalTriangleCount : '?'}`);
    for (const m of i.messages) {
      if (m.severity <= 1) console.log(`  [${m.severity === 0 ? 'error' : 'warning'}] ${m.code} ${m.pointer || ''}: ${m.message}`);
    }
    if (i.numErrors > 0) bad++;
  }
  return bad ? 1 : 0;
}

main(process.argv.slice(2)).then((rc) => process.exit(rc),
  (e) => { console.error(e); process.exit(1); });
