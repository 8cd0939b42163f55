#!/usr/bin/env node
// Derives JSON Schemas from Grafana's own TypeScript types (npm @grafana/schema,
// pinned in package.json to the Grafana image of docker-compose-monitoring.yml):
// the classic dashboard model and, per panel type ORFEAS uses, its Options and
// FieldConfig (the `options` and `fieldConfig.defaults.custom` of a panel).
// usage: grafana-schemas.js OUT.json      (check-dashboards validates against it)
'use strict';
const fs = require('fs');
const path = require('path');
const tsj = require('ts-json-schema-generator');

const root = path.join(__dirname, '..', '..');
const raw = path.join(root, 'node_modules/@grafana/schema/dist/esm/raw');
const panels = {
  timeseries: 'TimeSeries', heatmap: 'Heatmap', piechart: 'PieChart', stat: 'Stat',
  gauge: 'Gauge', table: 'Table', bargauge: 'BarGauge',
};

function generator(file) {
  // The tsconfig beside this file lists no ambient types: the schema must not
  // depend on which @types/* other npm packages happen to install.
  return tsj.createGenerator({ path: file, type: '*', skipTypeCheck: true, expose: 'export',
                               topRef: true, additionalProperties: false,
                               tsconfig: path.join(__dirname, 'grafana-schemas.tsconfig.json') });
}

const out = {
  grafanaSchemaVersion: require(path.join(root, 'node_modules/@grafana/schema/package.json')).version,
  dashboard: generator(path.join(raw, 'dashboard/x/dashboard_types.gen.d.ts')).createSchema('Dashboard'),
  panels: {},
};
for (const [id, name] of Object.entries(panels)) {
  const f = path.join(raw, `composable/${id}/panelcfg/x/${name}PanelCfg_types.gen.d.ts`);
  const g = generator(f);
  // stat, gauge and bargauge have no panel-specific FieldConfig (no `custom`).
  const hasFieldConfig = /export interface FieldConfig\b/.test(fs.readFileSync(f, 'utf8'));
  out.panels[id] = { options: g.createSchema('Options'),
                     fieldConfig: hasFieldConfig ? g.createSchema('FieldConfig') : null };
}
fs.writeFileSync(process.argv[2], JSON.stringify(out));
