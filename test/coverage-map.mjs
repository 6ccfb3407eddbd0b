// Coverage is measured on src/ (its compiled copy in .build/src, mapped back to the .ts files) and on
// the kit packages: packages/verify (its dist/, mapped back to packages/verify/src) and
// packages/miniprogram (plain JavaScript, run as it is), whichever test file exercised them.
export default () => ['.build/src/**', 'packages/verify/dist/**', 'packages/miniprogram/src/**']
