// Bundles each client generation for the browser page: dist/current.js, dist/legacy.js.
// Each is an IIFE that sets window.CallsClient = {RTCPeer, generation}.
// `events` (Node's EventEmitter) comes from the npm polyfill of the same name.
//
// legacy: @mattermost/calls-common 0.27.2 from npm (package "calls-common-legacy").
// current: the current client library is not published on npm and not in this repository:
// CALLS_COMMON_DIR names a build of it (the directory holding its package.json and lib/).
// Without it, dist/current.js is not built and the current-client scenarios are skipped.
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const common = process.env.CALLS_COMMON_DIR ? path.resolve(process.env.CALLS_COMMON_DIR) : '';
const generations = ['legacy'];
if (common && fs.existsSync(path.join(common, 'lib', 'rtc_peer.js'))) {
    generations.push('current');
} else {
    fs.rmSync(path.join(here, 'dist', 'current.js'), {force: true});
    console.error(common ?
        `CALLS_COMMON_DIR=${common} has no lib/rtc_peer.js: dist/current.js not built (current-client scenarios will be skipped)` :
        'CALLS_COMMON_DIR not set: dist/current.js not built (current-client scenarios will be skipped; set it to a build of the current Calls client library, @mattermost/calls-common)');
}
for (const gen of generations) {
    await esbuild.build({
        entryPoints: [path.join(here, 'page', `entry-${gen}.js`)],
        outfile: path.join(here, 'dist', `${gen}.js`),
        bundle: true,
        format: 'iife',
        globalName: 'CallsClient',
        platform: 'browser',
        target: 'chrome110',
        // The current client lives outside this package: resolve its own imports (events,
        // @msgpack/msgpack, fflate, semver) from this package's node_modules.
        alias: gen === 'current' ? {'@mattermost/calls-common': common} : {},
        preserveSymlinks: true,
        nodePaths: [path.join(here, 'node_modules')],
        logLevel: 'warning',
    });
    console.error(`built dist/${gen}.js`);
}
