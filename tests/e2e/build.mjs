// Bundles each client generation for the browser page: dist/current.js, dist/legacy.js.
// Each is an IIFE that sets window.CallsClient = {RTCPeer, generation}.
// `events` (Node's EventEmitter) comes from the npm polyfill of the same name.
import * as esbuild from 'esbuild';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
for (const gen of ['current', 'legacy']) {
    await esbuild.build({
        entryPoints: [path.join(here, 'page', `entry-${gen}.js`)],
        outfile: path.join(here, 'dist', `${gen}.js`),
        bundle: true,
        format: 'iife',
        globalName: 'CallsClient',
        platform: 'browser',
        target: 'chrome110',
        // The local client is a symlink into ../../../shared; resolve its imports
        // (events, @msgpack/msgpack, fflate, semver) from this package's node_modules.
        preserveSymlinks: true,
        nodePaths: [path.join(here, 'node_modules')],
        logLevel: 'warning',
    });
    console.error(`built dist/${gen}.js`);
}
