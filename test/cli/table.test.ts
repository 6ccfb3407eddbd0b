import t from 'tap'
import { displayWidth, table } from '../../src/cli/table.js'

t.test('displayWidth: what a terminal shows', async (t) => {
  const cases: Array<[string, number]> = [
    ['', 0],
    ['abc', 3],
    ['小明', 4],
    ['ｆｕｌｌ', 8],
    ['한글', 4],
    ['Zoë', 3],
    ['e\u0301', 1],
    ['👍', 2],
    ['👨‍👩‍👧', 2],
    ['❤️', 2],
    ['🇨🇳', 2],
    ['a\u200bb', 2],
  ]
  for (const [text, width] of cases) t.equal(displayWidth(text), width, `${JSON.stringify(text)}: ${width}`)
})

t.test('table: columns padded by display width, two spaces apart, the last unpadded', async (t) => {
  t.same(table([
    ['SUB', 'NICKNAME', 'PHONE'],
    ['a', '小明', '+86'],
    ['bbbb', 'Bob', '-'],
  ]), ['SUB   NICKNAME  PHONE', 'a     小明      +86', 'bbbb  Bob       -'])
  t.same(table([]), [])
})
