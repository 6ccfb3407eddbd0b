import { InvalidRequest } from '../errors.js'

/**
 * A code as WeChat issues them (wx.login, getPhoneNumber): letters, digits and URL-safe punctuation,
 * never longer than 128. Anything with URL syntax (& = % # ? +), spaces or non-ASCII is refused here.
 */
const CODE = /^[A-Za-z0-9._~-]{1,128}$/

/** Checks a WeChat code before it is sent anywhere, so junk never costs an upstream request. */
export function validateWeChatCode(code: string | undefined): string {
  if (code === undefined || code === '') throw new InvalidRequest('the code parameter is required')
  if (!CODE.test(code)) throw new InvalidRequest('the code must be 1 to 128 characters among A-Z a-z 0-9 . _ ~ -')
  return code
}
