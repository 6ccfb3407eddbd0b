// Coverage is measured on src/ only (its compiled copy in .build/src, mapped back to the .ts files),
// whichever test file exercised it.
export default () => ['.build/src/**']
