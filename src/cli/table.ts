/** Code points a terminal shows two columns wide: East Asian wide and fullwidth characters, and emoji. */
const WIDE = /[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1f64f}\u{1f900}-\u{1f9ff}\u{20000}-\u{3fffd}]|\p{Emoji_Presentation}|\p{Extended_Pictographic}\uFE0F/u
/** Code points that take no column: combining marks, joiners, selectors, controls. */
const ZERO = /^[\p{M}\p{Cc}\p{Cf}\p{Default_Ignorable_Code_Point}]$/u

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' })

/**
 * The columns `text` takes in a terminal: a grapheme (what the eye sees as one character, an emoji
 * sequence included) is two columns when any part of it is wide (CJK, emoji), none when it is only
 * combining or invisible, one otherwise.
 *
 * @example displayWidth('小明') // 4
 */
export function displayWidth(text: string): number {
  let width = 0
  for (const { segment } of graphemes.segment(text)) {
    if (WIDE.test(segment)) width += 2
    else if (![...segment].every((char) => ZERO.test(char))) width += 1
  }
  return width
}

/**
 * Lines of `rows` in aligned columns, two spaces apart, padded by display width (so that Chinese
 * nicknames and emoji keep the columns straight); the last column is not padded.
 *
 * @example table([['SUB', 'NICKNAME'], ['abc', '小明']]).join('\n')
 */
export function table(rows: string[][]): string[] {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, index) => (widths[index] = Math.max(widths[index] ?? 0, displayWidth(cell))))
  return rows.map((row) =>
    row
      .map((cell, index) => (index === row.length - 1 ? cell : cell + ' '.repeat((widths[index] as number) - displayWidth(cell))))
      .join('  ')
      .trimEnd(),
  )
}
