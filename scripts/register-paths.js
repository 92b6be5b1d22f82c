// Resolves the @psp/* aliases for compiled code under dist/ (node -r ./scripts/register-paths.js dist/apps/...).
const path = require('path');
const tsconfigPaths = require('tsconfig-paths');
const { compilerOptions } = require('../tsconfig.json');
tsconfigPaths.register({ baseUrl: path.join(__dirname, '..', 'dist'), paths: compilerOptions.paths });
