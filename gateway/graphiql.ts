// An offline GraphiQL (Apollo's landing page loads from a CDN): the page and its scripts are served from
// node_modules. A token in the URL fragment (#token=…, never sent to the server) pre-fills the Authorization header.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import type { RouteHandler } from '../lib/http.js';

const require = createRequire(import.meta.url);

const ASSETS: Record<string, { module: string; type: string }> = {
  'react.js': { module: 'react/umd/react.production.min.js', type: 'text/javascript' },
  'react-dom.js': { module: 'react-dom/umd/react-dom.production.min.js', type: 'text/javascript' },
  'graphiql.js': { module: 'graphiql/graphiql.min.js', type: 'text/javascript' },
  'graphiql.css': { module: 'graphiql/graphiql.min.css', type: 'text/css' },
};

function page(endpoint: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Land cover change detection — GraphiQL</title>
<link rel="stylesheet" href="/graphiql/assets/graphiql.css">
<style>html,body,#graphiql{height:100%;margin:0}</style>
</head>
<body>
<div id="graphiql">Loading…</div>
<script src="/graphiql/assets/react.js"></script>
<script src="/graphiql/assets/react-dom.js"></script>
<script src="/graphiql/assets/graphiql.js"></script>
<script>
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token') || localStorage.getItem('lcd-token') || '';
  if (fragment.get('token')) { localStorage.setItem('lcd-token', token); history.replaceState(null, '', location.pathname); }
  const fetcher = GraphiQL.createFetcher({ url: ${JSON.stringify(endpoint)} });
  const defaultHeaders = JSON.stringify(token ? { Authorization: 'Bearer ' + token } : { Authorization: 'Bearer <token from npm start or npm run token>' }, null, 2);
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, { fetcher, defaultHeaders, shouldPersistHeaders: true, defaultQuery: '{ datasets(first: 5) { totalCount edges { node { id name } } } }' })
  );
</script>
</body>
</html>`;
}

export function graphiqlRoute(endpoint: string): RouteHandler {
  const cache = new Map<string, Buffer>();
  return async (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method !== 'GET') return false;
    if (path === '/graphiql' || path === '/') {
      const html = page(endpoint);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(html);
      return true;
    }
    const asset = path.startsWith('/graphiql/assets/') ? ASSETS[path.slice('/graphiql/assets/'.length)] : undefined;
    if (!asset) return false;
    let body = cache.get(asset.module);
    if (!body) {
      body = await readFile(require.resolve(asset.module));
      cache.set(asset.module, body);
    }
    res.writeHead(200, { 'content-type': `${asset.type}; charset=utf-8`, 'cache-control': 'public, max-age=86400' });
    res.end(body);
    return true;
  };
}
