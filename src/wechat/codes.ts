import { InvalidRequest } from '../errors.js'

/** A code as WeChat issues them (wx.login, getPhoneNumber): printable ASCII, never longer than 128. */
const CODE = /^[\x21-\x7e]{1,128}$/

/** Checks a WeChat code before it is sent anywhere, so junk never costs an upstream request. */
export function validateWeChatCode(code: string | undefined): string {
  if (code === undefined || code === '') throw new InvalidRequest('the code parameter is required')
  if (!CODE.test(code)) throw new InvalidRequest('the code must be 1 to 128 printable ASCII characters')
  return code
}
