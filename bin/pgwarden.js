#!/usr/bin/env node
// React's development build leaks timing entries on every render: production mode must be set
// before anything imports React.
process.env.NODE_ENV ??= 'production';
await import('../dist/cli.js');
