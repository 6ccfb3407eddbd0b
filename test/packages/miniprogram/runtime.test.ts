import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import vm from 'node:vm'
import { createFakeWx } from '@minigate/demo/fake-wx'
import t from 'tap'
import ts from 'typescript'
import { startKitApp } from '../../helpers/kit.js'

// The client must run in a mini-program as it is: CommonJS, syntax WeChat's runtime accepts without
// a compile step (ES2017, and no async functions), and none of the globals a mini-program lacks.
const packageJsonPath = createRequire(import.meta.url).resolve('@minigate/miniprogram/package.json')
const packageDir = dirname(packageJsonPath)
const manifest = JSON.parse(readFileSync(packageJsonPath, 'utf8')) as Record<string, any>
const entry = join(packageDir, manifest.main as string)
const source = readFileSync(entry, 'utf8')

/** Globals of Node or browsers that a mini-program does not have. */
const NOT_IN_A_MINIPROGRAM = new Set([
  'process', 'Buffer', 'global', 'globalThis', '__dirname', '__filename', 'require', 'fetch', 'URL', 'URLSearchParams',
  'TextEncoder', 'TextDecoder', 'atob', 'btoa', 'setImmediate', 'queueMicrotask', 'structuredClone', 'XMLHttpRequest',
  'window', 'document', 'FormData', 'Blob', 'AbortController', 'AbortSignal', 'Headers', 'localStorage',
])

function isPropertyName(node: ts.Identifier): boolean {
  const parent = node.parent
  return (
    (ts.isPropertyAccessExpression(parent) && parent.name === node) ||
    (ts.isPropertyAssignment(parent) && parent.name === node) ||
    (ts.isMethodDeclaration(parent) && parent.name === node)
  )
}

t.test('package.json: a mini-program npm package with no dependencies', async (t) => {
  t.equal(manifest.miniprogram, 'src', 'WeChat DevTools’ "build npm" copies the miniprogram folder')
  t.equal(join(packageDir, manifest.miniprogram, 'index.js'), entry, 'whose index.js is the entry (require by package name)')
  t.equal(manifest.type, undefined, 'CommonJS')
  t.equal(manifest.dependencies, undefined, 'no dependencies')
  t.equal(manifest.types, 'index.d.ts')
})

t.test('src/index.js: ES2017 syntax, CommonJS, no Node or browser globals', async (t) => {
  const file = ts.createSourceFile(entry, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS)
  const findings: string[] = []
  const at = (node: ts.Node) => `line ${file.getLineAndCharacterOfPosition(node.getStart()).line + 1}`
  function visit(node: ts.Node): void {
    if ((ts.isPropertyAccessExpression(node) || ts.isElementAccessExpression(node) || ts.isCallExpression(node)) && node.questionDotToken) findings.push(`optional chaining (ES2020) at ${at(node)}`)
    if (ts.isBinaryExpression(node) && [ts.SyntaxKind.QuestionQuestionToken, ts.SyntaxKind.QuestionQuestionEqualsToken, ts.SyntaxKind.BarBarEqualsToken, ts.SyntaxKind.AmpersandAmpersandEqualsToken].includes(node.operatorToken.kind)) {
      findings.push(`${node.operatorToken.getText()} (ES2020+) at ${at(node)}`)
    }
    if (ts.isSpreadAssignment(node)) findings.push(`object spread (ES2018) at ${at(node)}`)
    if (ts.isBindingElement(node) && node.dotDotDotToken && ts.isObjectBindingPattern(node.parent)) findings.push(`object rest (ES2018) at ${at(node)}`)
    if (ts.isCatchClause(node) && !node.variableDeclaration) findings.push(`catch without a binding (ES2019) at ${at(node)}`)
    if (ts.isForOfStatement(node) && node.awaitModifier) findings.push(`for await (ES2018) at ${at(node)}`)
    if (node.kind === ts.SyntaxKind.BigIntLiteral) findings.push(`BigInt (ES2020) at ${at(node)}`)
    if (ts.isNumericLiteral(node) && node.getText().includes('_')) findings.push(`numeric separator (ES2021) at ${at(node)}`)
    if (ts.isPropertyDeclaration(node) || ts.isPrivateIdentifier(node)) findings.push(`class field (ES2022) at ${at(node)}`)
    if (ts.isRegularExpressionLiteral(node) && (/\/[a-z]*[sdv][a-z]*$/.test(node.text) || /\(\?<[=!A-Za-z]/.test(node.text))) findings.push(`regex feature after ES2017 at ${at(node)}`)
    if (node.kind === ts.SyntaxKind.AsyncKeyword || ts.isAwaitExpression(node)) findings.push(`async/await (kept out for older runtimes) at ${at(node)}`)
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node) || ts.isExportAssignment(node) || ts.isMetaProperty(node)) findings.push(`ES module syntax at ${at(node)}`)
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) findings.push(`import() at ${at(node)}`)
    if (ts.isIdentifier(node) && !isPropertyName(node) && NOT_IN_A_MINIPROGRAM.has(node.text)) findings.push(`${node.text} (not in a mini-program) at ${at(node)}`)
    ts.forEachChild(node, visit)
  }
  visit(file)
  t.same(findings, [], 'nothing a mini-program could not run')
  t.match(source, /^'use strict'/)
  t.match(source, /\nexports\.createClient = createClient\n/)
})

t.test('runs in a bare JavaScript context with a global wx: no Node global is touched', async (t) => {
  const app = await startKitApp(t)
  const wx = createFakeWx({ issuer: app.url, openid: 'oBareContext' })
  const moduleObject = { exports: {} as Record<string, any> }
  // A fresh context has the language's built-ins only (no setTimeout, console, process, Buffer, fetch).
  vm.runInNewContext(source, { module: moduleObject, exports: moduleObject.exports, wx }, { filename: entry })
  const { createClient, MinigateError } = moduleObject.exports
  const client = createClient({ issuer: app.url, clientId: 'wx0000000000000dev' })
  await client.login()
  const response = await client.request({ url: `${app.url}/userinfo` })
  t.equal(response.statusCode, 200, 'logged in and called minigate through the global wx')
  const before = await client.accessToken()
  await app.postForm('/revoke', { token: before })
  t.equal((await client.getUser()).sub, response.data.sub, 'refreshed after a 401')
  t.not(await client.accessToken(), before)
  await client.logout()
  t.equal(client.isLoggedIn(), false)
  let error: unknown
  try {
    await client.bindPhone('')
  } catch (caught) {
    error = caught
  }
  t.equal((error as Error).name, 'TypeError')
  t.ok(new MinigateError('x', 'y', 400) instanceof MinigateError)
  t.equal(wx.count('request', 'refresh_token'), 1)
})
