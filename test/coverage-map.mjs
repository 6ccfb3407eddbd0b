// Coverage is measured on src/ only, whichever test file exercised it.
export default () => ['src/**']
