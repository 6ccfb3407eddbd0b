'use strict'
// @minigate/miniprogram: the minigate client for a WeChat mini-program.
//
// Plain CommonJS at an ES2017 syntax level, no dependencies, no Node API: it runs in the mini-program
// as it is. Everything it does goes through the `wx` it is given (wx.login, wx.request, wx.uploadFile,
// wx.getStorageSync, wx.setStorageSync, wx.removeStorageSync), which is why tests and Node scripts can
// hand it a fake one.

var WECHAT_CODE_GRANT = 'urn:minigate:grant-type:wechat-code'
/** Refresh when the access token has less than this left (or half its life, if it is that short). */
var REFRESH_MARGIN_MS = 60 * 1000
var DEFAULT_STORAGE_KEY = 'minigate:tokens'

/**
 * The one error type of this client. `code` is minigate's OAuth error (`invalid_grant`,
 * `invalid_token`, `insufficient_scope`, `temporarily_unavailable`, ...) or one of the client's own:
 * `network_error` (wx.request failed), `wx_login_failed`, `invalid_response`, `invalid_discovery`.
 * `status` is the HTTP status (0 when no answer came).
 */
function MinigateError(code, description, status) {
  var error = new Error(description || code)
  Object.setPrototypeOf(error, MinigateError.prototype)
  error.name = 'MinigateError'
  error.code = code
  error.description = description || code
  error.status = status || 0
  return error
}
MinigateError.prototype = Object.create(Error.prototype, {
  constructor: { value: MinigateError, writable: true, configurable: true },
})

function isObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** wx.request parses JSON bodies itself; wx.uploadFile gives text. */
function bodyOf(response) {
  var data = response.data
  if (typeof data === 'string') {
    try {
      return JSON.parse(data)
    } catch (ignored) {
      return data
    }
  }
  return data
}

function headerOf(response, name) {
  var header = response.header || {}
  var wanted = name.toLowerCase()
  for (var key in header) {
    if (Object.prototype.hasOwnProperty.call(header, key) && key.toLowerCase() === wanted) return String(header[key])
  }
  return ''
}

/** RFC 6750 §3.1: the token is expired, revoked or otherwise bad; a new one may do. */
function isInvalidToken(response) {
  if (response.statusCode !== 401) return false
  if (/error="invalid_token"/.test(headerOf(response, 'WWW-Authenticate'))) return true
  var body = bodyOf(response)
  return isObject(body) && body.error === 'invalid_token'
}

function errorOf(response) {
  var body = bodyOf(response)
  var status = response.statusCode
  if (isObject(body) && typeof body.error === 'string') {
    return new MinigateError(body.error, typeof body.error_description === 'string' ? body.error_description : body.error, status)
  }
  return new MinigateError(status >= 500 ? 'server_error' : 'http_' + status, 'the server answered HTTP ' + status, status)
}

function formEncode(params) {
  var parts = []
  for (var name in params) {
    if (Object.prototype.hasOwnProperty.call(params, name) && params[name] !== undefined) {
      parts.push(encodeURIComponent(name) + '=' + encodeURIComponent(params[name]))
    }
  }
  return parts.join('&')
}

/** The token set as stored: a plain object, so wx.setStorageSync keeps it as it is. */
function isTokenSet(value) {
  return isObject(value) && typeof value.access_token === 'string' && typeof value.refresh_token === 'string' &&
    typeof value.expires_at === 'number' && typeof value.refresh_at === 'number'
}

/**
 * Creates the client. Options: `issuer` (minigate's issuer URL), `clientId` (the mini-program's appid),
 * `scope` (e.g. 'openid profile phone'; minigate's default is 'profile'), `wx` (defaults to the global
 * one), `storageKey` (default 'minigate:tokens'), `now` (ms clock, default Date.now).
 */
function createClient(options) {
  if (!isObject(options)) throw new TypeError('createClient: pass { issuer, clientId }')
  if (typeof options.issuer !== 'string' || !/^https?:\/\/[^/]/.test(options.issuer)) throw new TypeError('createClient: issuer must be the issuer URL')
  if (typeof options.clientId !== 'string' || options.clientId === '') throw new TypeError('createClient: clientId must be the mini-program appid')
  var wxApi = options.wx || (typeof wx !== 'undefined' ? wx : undefined) // eslint-disable-line no-undef
  if (!wxApi) throw new TypeError('createClient: no wx object (outside a mini-program, pass one as options.wx)')
  var issuer = options.issuer
  var base = issuer.replace(/\/+$/, '')
  var clientId = options.clientId
  var scope = options.scope
  var storageKey = options.storageKey || DEFAULT_STORAGE_KEY
  var now = options.now || function () { return Date.now() }

  var tokens = load()
  /** The one renewal (refresh, or wx.login and login) in flight; every caller that needs one shares it. */
  var renewing = null
  var discovery = null

  function load() {
    try {
      var stored = wxApi.getStorageSync(storageKey)
      return isTokenSet(stored) ? stored : null
    } catch (ignored) {
      return null
    }
  }

  function save(next) {
    tokens = next
    try {
      if (next) wxApi.setStorageSync(storageKey, next)
      else wxApi.removeStorageSync(storageKey)
    } catch (ignored) {
      // Storage full or unavailable: the tokens still work for this run of the mini-program.
    }
  }

  /** wx.request as a Promise; resolves with any HTTP answer, rejects only when none came. */
  function send(requestOptions) {
    return new Promise(function (resolve, reject) {
      var call = {}
      for (var name in requestOptions) {
        if (Object.prototype.hasOwnProperty.call(requestOptions, name) && name !== 'success' && name !== 'fail' && name !== 'complete') {
          call[name] = requestOptions[name]
        }
      }
      call.success = resolve
      call.fail = function (error) {
        reject(new MinigateError('network_error', (error && error.errMsg) || 'request:fail', 0))
      }
      wxApi.request(call)
    })
  }

  /** wx.uploadFile as a Promise, answering like wx.request does. */
  function upload(uploadOptions) {
    return new Promise(function (resolve, reject) {
      wxApi.uploadFile({
        url: uploadOptions.url,
        filePath: uploadOptions.filePath,
        name: uploadOptions.name,
        header: uploadOptions.header,
        success: function (response) {
          resolve({ statusCode: response.statusCode, data: response.data, header: response.header || {} })
        },
        fail: function (error) {
          reject(new MinigateError('network_error', (error && error.errMsg) || 'uploadFile:fail', 0))
        },
      })
    })
  }

  /** The issuer's endpoints from its discovery document, fetched once (again after a failure). */
  function endpoints() {
    if (!discovery) {
      discovery = send({ url: base + '/.well-known/openid-configuration', method: 'GET' }).then(function (response) {
        var metadata = bodyOf(response)
        if (response.statusCode !== 200 || !isObject(metadata)) throw errorOf(response)
        if (metadata.issuer !== issuer || typeof metadata.token_endpoint !== 'string') {
          throw new MinigateError('invalid_discovery', 'the discovery document does not describe the issuer ' + issuer, response.statusCode)
        }
        return {
          token: metadata.token_endpoint,
          userinfo: metadata.userinfo_endpoint || base + '/userinfo',
          revocation: metadata.revocation_endpoint || base + '/revoke',
          logout: metadata.logout_endpoint || base + '/logout',
          profile: metadata.userinfo_profile_endpoint || base + '/userinfo/profile',
          picture: metadata.userinfo_picture_endpoint || base + '/userinfo/picture',
          phone: metadata.wechat_phone_endpoint || base + '/wechat/phone',
          accountDelete: metadata.account_delete_endpoint || base + '/account/delete',
          accountExport: metadata.account_export_endpoint || base + '/account/export',
        }
      })
      discovery.catch(function () {
        discovery = null
      })
    }
    return discovery
  }

  function postForm(url, params) {
    return send({ url: url, method: 'POST', header: { 'content-type': 'application/x-www-form-urlencoded' }, data: formEncode(params) })
  }

  /** Keeps a token response; refreshes `REFRESH_MARGIN_MS` before it expires. */
  function store(response) {
    var body = bodyOf(response)
    if (!isObject(body) || typeof body.access_token !== 'string' || typeof body.refresh_token !== 'string' ||
        typeof body.expires_in !== 'number' || !(body.expires_in > 0)) {
      throw new MinigateError('invalid_response', 'the token endpoint answered without tokens', response.statusCode)
    }
    var lifetime = body.expires_in * 1000
    var time = now()
    var next = {
      access_token: body.access_token,
      refresh_token: body.refresh_token,
      scope: typeof body.scope === 'string' ? body.scope : '',
      expires_at: time + lifetime,
      refresh_at: time + Math.max(lifetime - REFRESH_MARGIN_MS, lifetime / 2),
    }
    if (typeof body.id_token === 'string') next.id_token = body.id_token
    save(next)
    return next
  }

  function wxLogin() {
    return new Promise(function (resolve, reject) {
      wxApi.login({
        success: function (result) {
          if (result && typeof result.code === 'string' && result.code !== '') resolve(result.code)
          else reject(new MinigateError('wx_login_failed', 'wx.login gave no code', 0))
        },
        fail: function (error) {
          reject(new MinigateError('wx_login_failed', (error && error.errMsg) || 'login:fail', 0))
        },
      })
    })
  }

  /** wx.login, then the wechat-code grant. */
  function logIn() {
    return wxLogin().then(function (code) {
      return endpoints().then(function (urls) {
        return postForm(urls.token, { grant_type: WECHAT_CODE_GRANT, code: code, client_id: clientId, scope: scope || undefined })
      })
    }).then(function (response) {
      if (response.statusCode !== 200) throw errorOf(response)
      return store(response)
    })
  }

  /**
   * The refresh grant. A refused refresh token (`invalid_grant`: expired, revoked, replayed) means the
   * login is over: log in again. Anything else (no answer, 5xx, 429) is the caller's error and keeps the
   * tokens, so a later call can try the same refresh token again.
   */
  function refresh(refreshToken) {
    return endpoints().then(function (urls) {
      return postForm(urls.token, { grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId })
    }).then(function (response) {
      if (response.statusCode === 200) return store(response)
      var body = bodyOf(response)
      if (response.statusCode === 400 && isObject(body) && body.error === 'invalid_grant') {
        save(null)
        return logIn()
      }
      throw errorOf(response)
    })
  }

  /** Starts the one renewal, or joins the one in flight. */
  function share(start) {
    if (renewing) return renewing
    var pending = start()
    renewing = pending.then(function (next) {
      renewing = null
      return next
    }, function (error) {
      renewing = null
      throw error
    })
    return renewing
  }

  /**
   * New tokens for a caller whose access token `stale` was refused. When another caller renewed them
   * meanwhile, those are the answer: one refresh serves every caller, however late it asks.
   */
  function renew(stale) {
    if (renewing) return renewing
    if (tokens && tokens.access_token !== stale && now() < tokens.refresh_at) return Promise.resolve(tokens)
    return share(function () {
      return tokens ? refresh(tokens.refresh_token) : logIn()
    })
  }

  /** Tokens good for a call now: waits for a renewal in flight, logs in or refreshes when needed. */
  function usableTokens() {
    if (renewing) return renewing
    if (!tokens) return share(logIn)
    if (now() >= tokens.refresh_at) return renew(tokens.access_token)
    return Promise.resolve(tokens)
  }

  /** Sends with the access token; on `401 invalid_token`, renews and sends once more. */
  function authorized(sendWith) {
    return usableTokens().then(function (current) {
      return sendWith(current.access_token).then(function (response) {
        if (!isInvalidToken(response)) return response
        return renew(current.access_token).then(function (fresh) {
          return sendWith(fresh.access_token)
        })
      })
    })
  }

  function withBearer(header, accessToken) {
    var merged = {}
    for (var name in header || {}) {
      if (Object.prototype.hasOwnProperty.call(header, name) && name.toLowerCase() !== 'authorization') merged[name] = header[name]
    }
    merged.Authorization = 'Bearer ' + accessToken
    return merged
  }

  /** A JSON call to one of minigate's own endpoints; resolves with the body of a 2xx answer. */
  function callIssuer(endpointName, method, data) {
    return endpoints().then(function (urls) {
      return authorized(function (accessToken) {
        var call = { url: urls[endpointName], method: method, header: withBearer({}, accessToken) }
        if (data !== undefined) {
          call.data = data
          call.header['content-type'] = 'application/json'
        }
        return send(call)
      })
    }).then(function (response) {
      if (response.statusCode < 200 || response.statusCode >= 300) throw errorOf(response)
      return bodyOf(response)
    })
  }

  function summary(current) {
    var result = { scope: current.scope, expiresAt: current.expires_at }
    if (current.id_token) result.idToken = current.id_token
    return result
  }

  return {
    /** Logs in (wx.login, then minigate); joins a login or refresh already in flight. */
    login: function () {
      return share(logIn).then(summary)
    },

    /** Whether tokens are stored (they may still need a refresh). */
    isLoggedIn: function () {
      return tokens !== null
    },

    /** wx.request with the Bearer token; resolves with wx.request's success result, whatever its status. */
    request: function (requestOptions) {
      if (!isObject(requestOptions) || typeof requestOptions.url !== 'string') {
        return Promise.reject(new TypeError('request: pass the wx.request options, with url'))
      }
      return authorized(function (accessToken) {
        var call = {}
        for (var name in requestOptions) {
          if (Object.prototype.hasOwnProperty.call(requestOptions, name)) call[name] = requestOptions[name]
        }
        call.header = withBearer(requestOptions.header, accessToken)
        return send(call)
      })
    },

    /** A usable access token (refreshing or logging in first if needed), for APIs the client does not wrap. */
    accessToken: function () {
      return usableTokens().then(function (current) {
        return current.access_token
      })
    },

    /** GET /userinfo. */
    getUser: function () {
      return callIssuer('userinfo', 'GET')
    },

    /** POST /userinfo/profile { nickname?, picture? } (wx.request cannot send PATCH). */
    updateProfile: function (profile) {
      if (!isObject(profile)) return Promise.reject(new TypeError('updateProfile: pass { nickname?, picture? }'))
      var data = {}
      if (profile.nickname !== undefined) data.nickname = profile.nickname
      if (profile.picture !== undefined) data.picture = profile.picture
      return callIssuer('profile', 'POST', data)
    },

    /** Uploads the avatar chosen with <button open-type="chooseAvatar"> (its temp file path); resolves with { picture }. */
    uploadAvatar: function (tempFilePath) {
      if (typeof tempFilePath !== 'string' || tempFilePath === '') return Promise.reject(new TypeError('uploadAvatar: pass the temp file path'))
      return endpoints().then(function (urls) {
        return authorized(function (accessToken) {
          return upload({ url: urls.picture, filePath: tempFilePath, name: 'file', header: withBearer({}, accessToken) })
        })
      }).then(function (response) {
        if (response.statusCode < 200 || response.statusCode >= 300) throw errorOf(response)
        return bodyOf(response)
      })
    },

    /** Binds the phone number behind a getPhoneNumber button's code; resolves with the number. */
    bindPhone: function (code) {
      if (typeof code !== 'string' || code === '') return Promise.reject(new TypeError('bindPhone: pass the code of the getPhoneNumber event'))
      return callIssuer('phone', 'POST', { code: code })
    },

    /** Removes the user's phone number (DELETE /wechat/phone; wx.request can send DELETE). */
    removePhone: function () {
      return callIssuer('phone', 'DELETE').then(function () {})
    },

    /** Everything minigate holds about the user (GET /account/export), as an object. */
    exportAccount: function () {
      return callIssuer('accountExport', 'GET')
    },

    /**
     * Deletes the user's account: a fresh wx.login() code proves the person is there, minigate deletes
     * the account, and the tokens are forgotten. A later login() creates a new user.
     */
    deleteAccount: function () {
      return wxLogin().then(function (code) {
        return callIssuer('accountDelete', 'POST', { code: code })
      }).then(function () {
        save(null)
      })
    },

    /**
     * Ends the login on minigate and forgets the tokens. The tokens are forgotten even when minigate
     * cannot be reached (the promise then rejects with `network_error`).
     */
    logout: function () {
      var settled = renewing ? renewing.then(function () {}, function () {}) : Promise.resolve()
      return settled.then(function () {
        var ending = tokens
        save(null)
        if (!ending) return undefined
        return endpoints().then(function (urls) {
          var revoke = function () {
            return postForm(urls.revocation, { token: ending.refresh_token, token_type_hint: 'refresh_token', client_id: clientId }).then(function (response) {
              if (response.statusCode !== 200) throw errorOf(response)
            })
          }
          if (now() >= ending.expires_at) return revoke()
          return send({ url: urls.logout, method: 'POST', header: withBearer({}, ending.access_token) }).then(function (response) {
            if (response.statusCode >= 200 && response.statusCode < 300) return undefined
            return revoke()
          })
        })
      })
    },
  }
}

exports.createClient = createClient
exports.MinigateError = MinigateError
