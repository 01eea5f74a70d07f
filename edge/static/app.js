/*
 * AMA Mesh browser client: join a room, hold one WebSocket to an edge, and
 * render the room's questions.
 *
 * The edge sends a snapshot, then patches with increasing seq numbers, plus
 * "mine" frames with the votes and pending questions visible only to this
 * user. Every intent the user makes
 * (ask, vote, moderate, settings) stays in the outbox until the edge
 * acknowledges it as committed or rejects it, and the whole outbox is sent
 * again after each welcome. Intents carry UUIDs and the room applies an id
 * only once, so sending one again is safe.
 *
 * Rendering is batched: state changes mark questions dirty, and one render
 * pass per frame updates their cached elements in place and reorders the
 * list only when the order changed.
 *
 * Text that users wrote (question text, author names, the room title) goes
 * only into elements with dir="auto" that app.css isolates, so bidirectional
 * control characters in it cannot reorder the counts, badges and buttons
 * around it. Plain-text places without CSS, such as the tab title and
 * confirm() prompts, wrap it in FSI and PDI instead (see isolateText).
 */
"use strict";

const BACKOFF_BASE_MS = 250;
const BACKOFF_CAP_MS = 10000;
const WELCOME_TIMEOUT_MS = 10000;
// While connected to an edge other than connection.urls[0], the page probes
// urls[0] this often and moves back once a probe socket opens. Each move that
// fails before its welcome doubles the wait, up to the maximum.
const HOME_PROBE_INTERVAL_MS = 15000;
const HOME_PROBE_MAX_INTERVAL_MS = 240000;
const HOME_PROBE_TIMEOUT_MS = 5000;
const SETTINGS_SAVED_DURATION_MS = 5000;
const COPIED_DURATION_MS = 5000;
const TOAST_DURATION_MS = 10000;
const TIME_REFRESH_MS = 30000;
const DEFAULT_MAX_QUESTION_LENGTH = 300;
const QUESTION_LENGTH_RANGE = [10, 2000];
// Characters of question text that name an anonymous author in the ban list.
const BAN_LABEL_EXCERPT_LENGTH = 40;

const TOKEN_ERROR_CODES = new Set(["invalid_token", "token_expired"]);
// After a rate_limited error, wait this long, then resend unaccepted intents
// at most RESEND_PER_SECOND per second, well under the edge's 10 per second.
const RATE_LIMITED_WAIT_MS = 1000;
const RESEND_PER_SECOND = 5;
// An intent sent on a welcomed socket gets its first ack within
// milliseconds, or within about 3 s while the edge moves to another region.
// With no ack for this long, the edge is taken as hung (a stopped process
// still has its sockets acknowledged by the kernel) and the page moves on
// to the next edge.
const ACK_TIMEOUT_MS = 4000;
// Intent id -> Date.now() when it was last sent on the current socket.
const intentSentAt = new Map();
const STAFF_ROLES = new Set(["moderator", "host"]);
const VOTABLE_STATUSES = new Set(["live", "answered"]);
const SETTING_FLAGS = ["questions_open", "pre_moderation", "anonymous_allowed", "downvotes_allowed"];

// Visibility rule of each moderation button, given a question and whether it
// is pinned. Per status, staff see: pending: Approve, Hide, Answer. Live:
// Hide, Answer, Pin or Unpin. Answered: Reopen, Hide, Pin or Unpin. Hidden:
// Approve. Unpin also shows on a pinned hidden question, because hiding does
// not unpin and the edge accepts unpin from any status.
const MODERATION_RULES = {
  approve: (question) => question.status === "pending" || question.status === "hidden",
  hide: (question) => question.status !== "hidden",
  answer: (question) => question.status === "pending" || question.status === "live",
  reopen: (question) => question.status === "answered",
  pin: (question, pinned) => !pinned && VOTABLE_STATUSES.has(question.status),
  unpin: (question, pinned) => pinned,
};

const EMPTY_STATE_TEXT = {
  all: "No questions here yet.",
  pending: "No pending questions.",
  live: "No live questions.",
  answered: "No answered questions.",
  hidden: "No hidden questions.",
};

const FRAME_HANDLERS = {
  welcome: handleWelcome,
  snapshot: handleSnapshot,
  patch: handlePatch,
  mine: handleMine,
  ack: handleAck,
  error: handleErrorFrame,
};

const state = {
  config: null,
  roomId: "",
  token: "",
  // "link" when the token came from the URL fragment, "storage" when from a join.
  tokenSource: "",
  // The last rejected token, sent along with the next join to keep the user id.
  previousToken: "",
  role: "",
  user: "",
  room: null,
  lastSeq: null,
  questions: new Map(),
  // Question id -> 1 or -1; questions without my vote are absent.
  myVotes: new Map(),
  // Intent id -> frame, in the order the user made them.
  outbox: new Map(),
  acceptedIntents: new Set(),
  sort: "popular",
  statusFilter: "all",
  // User ids whose ban from this page the room committed, minus those this
  // page unbanned since. The room does not send its own ban list.
  bannedUsers: new Set(),
  // User id -> the label to show for that user in the ban list.
  banLabels: new Map(),
  // The room's message from the last intent rejected with code "banned",
  // until an intent of this user commits again.
  bannedMessage: "",
};

const connection = {
  socket: null,
  urls: [],
  urlIndex: 0,
  attempt: 0,
  welcomed: false,
  stopped: true,
  reconnectTimer: null,
  welcomeTimer: null,
  // The open probe socket to urls[0], and the timer that starts the next
  // probe or ends the open one.
  homeProbe: null,
  homeProbeTimer: null,
  // True from a move to urls[0] until its welcome or its close.
  movingHome: false,
  homeMoveFailures: 0,
};

const ui = {
  // Question id -> the element of that question and its parts.
  cards: new Map(),
  dirtyQuestions: new Set(),
  orderDirty: false,
  roomDirty: false,
  outboxDirty: false,
  renderScheduled: false,
  settingsEdited: false,
  settingsMessage: "",
  // Style of settingsMessage: "error", "success", or "" for a plain note.
  settingsMessageKind: "",
  settingsMessageTimer: null,
  inviteStatusTimer: null,
  toastTimer: null,
};

const dom = {};

const relativeTimeFormat = new Intl.RelativeTimeFormat("en", { numeric: "auto" });

start();

// ---------------------------------------------------------------------------
// Startup and joining
// ---------------------------------------------------------------------------

async function start() {
  findElements();
  bindEvents();
  setInterval(refreshTimes, TIME_REFRESH_MS);

  const link = readLink();
  state.config = await loadConfig();
  openFromLink(link);
}

function findElements() {
  const ids = [
    "room-title", "connection-state", "role", "join-view", "join-form", "join-room", "join-code",
    "join-name", "join-submit", "join-message-slot", "room-view", "pinned", "pinned-list",
    "ask-form", "ask-text", "anonymous-option", "ask-anonymous", "ask-counter", "ask-too-long", "ask-submit",
    "composer-note", "pending-asks", "host-settings", "settings-form", "settings-title",
    "settings-max-length", "settings-status", "question-count", "status-filter-field",
    "status-filter", "pending-badge", "question-list", "empty-note", "toast", "toast-message-slot",
    "error-message", "toast-dismiss", "question-template", "invite-moderator", "invite-status",
    "invite-result", "moderator-code", "moderator-link", "copy-moderator-link", "ban-list-panel", "ban-list",
  ];
  for (const id of ids) {
    dom[toCamelCase(id)] = document.getElementById(id);
  }
  dom.sortButtons = [...document.querySelectorAll("[data-sort]")];
  dom.settingsDetails = dom.hostSettings.querySelector("details");
}

function bindEvents() {
  dom.joinForm.addEventListener("submit", handleJoinSubmit);
  dom.askForm.addEventListener("submit", handleAskSubmit);
  dom.askText.addEventListener("input", updateComposer);
  dom.askText.addEventListener("keydown", handleAskKeydown);
  dom.settingsForm.addEventListener("submit", handleSettingsSubmit);
  dom.settingsForm.addEventListener("input", handleSettingsInput);
  dom.questionList.addEventListener("click", handleQuestionClick);
  dom.pinnedList.addEventListener("click", handleQuestionClick);
  dom.statusFilter.addEventListener("change", handleFilterChange);
  dom.pendingBadge.addEventListener("click", showPendingQuestions);
  dom.toastDismiss.addEventListener("click", clearError);
  dom.inviteModerator.addEventListener("click", handleInviteClick);
  dom.copyModeratorLink.addEventListener("click", copyModeratorLink);
  dom.banList.addEventListener("click", handleBanListClick);
  window.addEventListener("online", reconnectNow);
  for (const button of dom.sortButtons) {
    button.addEventListener("click", () => setSort(button.dataset.sort));
  }
}

function readLink() {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  return {
    room: query.get("room") || "",
    code: query.get("code") || "",
    token: fragment.get("token") || "",
  };
}

async function openFromLink(link) {
  if (link.room && link.token) {
    startSession(link.room, link.token, ownEdgeFirst(await locateEdges()), "link");
    return;
  }
  const stored = link.room ? loadStoredSession(link.room) : null;
  if (stored && !isOtherCode(link.code, stored.code)) {
    startSession(link.room, stored.token, stored.edges, "storage");
    return;
  }
  // A link with another code, such as a moderator invitation opened where
  // the user joined as audience, needs a new join to get that code's role.
  // The old token goes along, so the user id and its votes stay.
  if (stored) {
    state.previousToken = stored.token;
  }
  showJoinView(link);
}

// Tell whether the link's code differs from the code the stored session
// joined with, compared as the core compares codes: letters and digits only,
// case-insensitive. A session stored without its code matches any code.
function isOtherCode(linkCode, storedCode) {
  if (!linkCode || !storedCode) {
    return false;
  }
  return normalizeCode(linkCode) !== normalizeCode(storedCode);
}

function normalizeCode(code) {
  return code.toUpperCase().replace(/[^\p{L}\p{N}]/gu, "");
}

// Ask this edge for every edge, nearest first; a staff link has no join
// response to take the list from. Without an answer, this edge alone serves.
async function locateEdges() {
  try {
    const response = await fetch("/v1/locate", { headers: { Accept: "application/json" } });
    const body = response.ok ? await response.json() : null;
    return Array.isArray(body?.edges) ? body.edges.filter((edge) => typeof edge === "string" && edge) : [];
  } catch {
    return [];
  }
}

// Fetch /v1/config, retrying with the reconnect backoff until it succeeds,
// because nothing else on the page works without the core and edge URLs.
async function loadConfig() {
  for (let attempt = 0; ; attempt += 1) {
    try {
      const config = await fetchConfig();
      clearError();
      return config;
    } catch (error) {
      const delay = backoffDelay(attempt);
      console.warn(`Loading /v1/config failed (${error.message}); retrying in ${Math.round(delay)} ms.`);
      setConnectionState("offline", "Cannot reach the server; retrying…");
      showError(`Could not load the server configuration from /v1/config: ${error.message}. Retrying automatically.`);
      await sleep(delay);
    }
  }
}

async function fetchConfig() {
  const response = await fetch("/v1/config", { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) {
    throw new Error(`HTTP status ${response.status}`);
  }
  const config = await response.json();
  if (typeof config.core !== "string" || typeof config.ws !== "string") {
    throw new Error("the response is missing the 'core' or 'ws' URL");
  }
  return config;
}

function showJoinView(link) {
  dom.joinRoom.value = link.room;
  dom.joinCode.value = link.code;
  dom.joinView.hidden = false;
  dom.roomView.hidden = true;
  clearError();
  setText(dom.roomTitle, "AMA Mesh");
  document.title = "AMA Mesh";
  setRole("");
  setConnectionState("idle");

  const firstEmpty = [dom.joinRoom, dom.joinCode, dom.joinName].find((input) => !input.value);
  (firstEmpty || dom.joinSubmit).focus();
}

function showRoomView() {
  dom.joinView.hidden = true;
  dom.roomView.hidden = false;
  clearError();
}

async function handleJoinSubmit(event) {
  event.preventDefault();
  const roomId = dom.joinRoom.value.trim();
  if (!roomId) {
    showError("Enter the room id from your invitation link.");
    dom.joinRoom.focus();
    return;
  }

  const code = dom.joinCode.value.trim();
  if (!code) {
    showError("Enter the room code from your invitation link.");
    dom.joinCode.focus();
    return;
  }
  // The core rejects an empty name too, but its message names the field.
  const name = dom.joinName.value.trim();
  if (!name) {
    showError("Enter your name to join.");
    dom.joinName.focus();
    return;
  }

  dom.joinSubmit.disabled = true;
  clearError();
  try {
    const joined = await requestJoin(roomId, code, name);
    storeSession(joined.room, joined.token, joined.edges, code);
    setAddressRoom(joined.room, code);
    startSession(joined.room, joined.token, joined.edges, "storage");
  } catch (error) {
    showError(error.message);
  } finally {
    dom.joinSubmit.disabled = false;
  }
}

async function requestJoin(roomId, code, name) {
  const core = state.config.core.replace(/\/+$/, "");
  const url = `${core}/v1/rooms/${encodeURIComponent(roomId)}/join`;
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(state.previousToken ? { code, name, previous_token: state.previousToken } : { code, name }),
    });
  } catch (error) {
    throw new Error(`Could not reach the server at ${core} (${error.message}); check your connection and try again.`);
  }

  const body = await readJsonBody(response);
  if (!response.ok) {
    throw new Error(body?.error?.message || `Joining failed with HTTP status ${response.status}; try again.`);
  }
  if (typeof body?.token !== "string" || !body.token) {
    throw new Error("The join response is missing the token; try joining again.");
  }
  const edges = Array.isArray(body.edges) ? body.edges.filter((edge) => typeof edge === "string" && edge) : [];
  const located = Boolean(body.routing && body.routing.location);
  return {
    room: typeof body.room === "string" && body.room ? body.room : roomId,
    token: body.token,
    edges: edges.length ? (located ? edges : ownEdgeFirst(edges)) : [state.config.ws],
  };
}

async function readJsonBody(response) {
  try {
    return await response.json();
  } catch {
    return null;
  }
}

function startSession(roomId, token, edgeUrls, tokenSource) {
  if (roomId !== state.roomId) {
    resetStaffTools();
    restoreOutbox(roomId);
  }
  state.roomId = roomId;
  state.token = token;
  state.tokenSource = tokenSource;
  resetRoomState();
  showRoomView();
  setText(dom.roomTitle, roomId);
  openConnection(edgeUrls);
}

// Without a location for this client (a private or unknown address), the
// edge that served this page is the best guess of a near one, so it comes
// first; with a location, the core's nearest-first order stands.
function ownEdgeFirst(edgeUrls) {
  const own = state.config.ws;
  return [own, ...edgeUrls.filter((url) => url !== own)];
}

// Clear what the previous session showed. The outbox stays because it
// contains the user's unconfirmed intents, and the room applies each intent
// id at most once.
function resetRoomState() {
  state.room = null;
  state.lastSeq = null;
  state.role = "";
  state.user = "";
  state.questions.clear();
  state.myVotes.clear();
  state.acceptedIntents.clear();
  ui.cards.clear();
  ui.dirtyQuestions.clear();
  dom.questionList.replaceChildren();
  dom.pinnedList.replaceChildren();
  ui.roomDirty = true;
  ui.orderDirty = true;
  ui.outboxDirty = true;
  scheduleRender();
}

// Forget the token and show the join form again with the edge's message.
// An expired token is exchanged for a fresh one with the same user and role,
// so the outbox resends as the same user. Only when that fails does the page
// ask to join again; the old token then goes along so the core keeps the
// user id and no vote counts twice.
async function handleTokenRejected(message) {
  stopConnection();
  const roomId = state.roomId;
  const refreshed = await refreshToken(roomId, state.token);
  if (refreshed) {
    const stored = loadStoredSession(roomId);
    const edges = stored ? stored.edges : connection.urls;
    storeSession(roomId, refreshed, edges);
    startSession(roomId, refreshed, edges, "storage");
    return;
  }
  state.previousToken = state.token;
  forgetSession(roomId);
  if (state.tokenSource === "link") {
    removeAddressToken();
  }
  state.token = "";
  showJoinView({ room: roomId, code: readLink().code });
  showError(message);
}

async function refreshToken(roomId, token) {
  if (!token) {
    return null;
  }
  const core = state.config.core.replace(/\/+$/, "");
  try {
    const response = await fetch(`${core}/v1/rooms/${encodeURIComponent(roomId)}/refresh`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ token }),
    });
    const body = response.ok ? await readJsonBody(response) : null;
    return typeof body?.token === "string" && body.token ? body.token : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// Stored sessions and the address bar
// ---------------------------------------------------------------------------

// Store the session of a room. Without `code` the stored code stays, as when
// a refreshed token replaces an expired one.
function storeSession(roomId, token, edges, code) {
  try {
    localStorage.setItem(`ama.token.${roomId}`, token);
    localStorage.setItem(`ama.edges.${roomId}`, JSON.stringify(edges));
    if (code !== undefined) {
      localStorage.setItem(`ama.code.${roomId}`, code);
    }
  } catch (error) {
    console.warn(`Storing the session of room ${roomId} failed (${error.message}); a reload will ask to join again.`);
  }
}

function loadStoredSession(roomId) {
  try {
    const token = localStorage.getItem(`ama.token.${roomId}`);
    if (!token) {
      return null;
    }
    const edges = JSON.parse(localStorage.getItem(`ama.edges.${roomId}`) || "[]");
    const urls = Array.isArray(edges) ? edges.filter((edge) => typeof edge === "string" && edge) : [];
    const code = localStorage.getItem(`ama.code.${roomId}`) || "";
    return { token, edges: urls.length ? urls : [state.config.ws], code };
  } catch (error) {
    console.warn(`Reading the stored session of room ${roomId} failed (${error.message}).`);
    return null;
  }
}

function forgetSession(roomId) {
  try {
    localStorage.removeItem(`ama.token.${roomId}`);
    localStorage.removeItem(`ama.edges.${roomId}`);
    localStorage.removeItem(`ama.code.${roomId}`);
  } catch (error) {
    console.warn(`Removing the stored session of room ${roomId} failed (${error.message}).`);
  }
}

// Put the room and the code the user joined with into the address, so that
// a reload finds the stored session of that code.
function setAddressRoom(roomId, code) {
  const url = new URL(location.href);
  url.searchParams.set("room", roomId);
  url.searchParams.set("code", code);
  history.replaceState(null, "", url);
}

function removeAddressToken() {
  const url = new URL(location.href);
  url.hash = "";
  history.replaceState(null, "", url);
}

// ---------------------------------------------------------------------------
// Connection: one WebSocket at a time, reconnecting with backoff
// ---------------------------------------------------------------------------

function openConnection(urls) {
  stopConnection();
  connection.urls = urls;
  connection.urlIndex = 0;
  connection.attempt = 0;
  connection.stopped = false;
  connection.movingHome = false;
  connection.homeMoveFailures = 0;
  connect();
}

function connect() {
  connection.reconnectTimer = null;
  stopHomeProbe();
  const url = connection.urls[connection.urlIndex];
  setConnectionState(connection.attempt === 0 ? "connecting" : "reconnecting");

  let socket;
  try {
    socket = new WebSocket(url);
  } catch (error) {
    console.warn(`Opening a WebSocket to ${url} failed (${error.message}).`);
    scheduleReconnect();
    return;
  }
  connection.socket = socket;
  connection.welcomed = false;
  socket.addEventListener("open", () => handleOpen(socket));
  socket.addEventListener("message", (event) => handleMessage(socket, event));
  socket.addEventListener("close", (event) => handleClose(socket, event));
  connection.welcomeTimer = setTimeout(() => abandonSocket(socket, "no welcome arrived in time"), WELCOME_TIMEOUT_MS);
}

function handleOpen(socket) {
  if (socket !== connection.socket) {
    return;
  }
  const hello = { type: "hello", token: state.token };
  if (state.lastSeq !== null) {
    hello.last_seq = state.lastSeq;
  }
  socket.send(JSON.stringify(hello));
}

function handleMessage(socket, event) {
  if (socket !== connection.socket) {
    return;
  }
  let frame;
  try {
    frame = JSON.parse(event.data);
  } catch (error) {
    console.warn(`Ignoring a frame that is not valid JSON (${error.message}).`);
    return;
  }
  const handler = FRAME_HANDLERS[frame?.type];
  if (!handler) {
    console.warn(`Ignoring a frame of unknown type ${JSON.stringify(frame?.type)}.`);
    return;
  }
  handler(frame);
}

function handleClose(socket, event) {
  if (socket !== connection.socket) {
    return;
  }
  connection.socket = null;
  connection.welcomed = false;
  clearTimeout(connection.welcomeTimer);
  stopHomeProbe();
  noteHomeMoveFailed();
  console.info(`The connection to ${socket.url} closed with code ${event.code} ${event.reason}`.trim());

  if (event.code === 1008) {
    handlePolicyClose(event.reason);
    return;
  }
  // 4001 means this client read too slowly; the other 40xx codes are final.
  if (event.code >= 4002 && event.code <= 4099) {
    stopWithMessage(`The edge closed the connection: ${event.reason || `code ${event.code}`}. Reload the page to connect again.`);
    return;
  }
  // Everything else, 1013 "try again later" included, backs off and reconnects.
  scheduleReconnect();
}

// For a bad token the edge sends an error frame, which shows the join form,
// and then closes with the error code as the reason. A close with that reason
// does the same for a server that skips the frame. Other 1008 closes keep the
// token.
function handlePolicyClose(reason) {
  if (TOKEN_ERROR_CODES.has(reason)) {
    handleTokenRejected("Your session is no longer valid; join the room again.");
    return;
  }
  stopWithMessage(`The edge closed the connection: ${reason || "policy violation"}. Reload the page to connect again.`);
}

function stopWithMessage(message) {
  stopConnection();
  setConnectionState("closed", "Disconnected");
  showError(message, { persistent: true });
}

function abandonSocket(socket, reason) {
  if (socket !== connection.socket) {
    return;
  }
  console.warn(`Dropping the connection to ${socket.url}: ${reason}.`);
  connection.socket = null;
  connection.welcomed = false;
  stopHomeProbe();
  noteHomeMoveFailed();
  socket.close();
  scheduleReconnect();
}

function scheduleReconnect() {
  if (connection.stopped) {
    return;
  }
  const delay = backoffDelay(connection.attempt);
  connection.attempt += 1;
  connection.urlIndex = (connection.urlIndex + 1) % connection.urls.length;
  setConnectionState("reconnecting");
  connection.reconnectTimer = setTimeout(connect, delay);
}

// Skip the remaining backoff wait when the browser reports it is online again.
function reconnectNow() {
  if (connection.stopped || connection.reconnectTimer === null) {
    return;
  }
  clearTimeout(connection.reconnectTimer);
  connect();
}

function stopConnection() {
  connection.stopped = true;
  connection.welcomed = false;
  connection.movingHome = false;
  clearTimeout(connection.reconnectTimer);
  clearTimeout(connection.welcomeTimer);
  stopHomeProbe();
  connection.reconnectTimer = null;
  const socket = connection.socket;
  connection.socket = null;
  if (socket) {
    socket.close(1000, "client left the room");
  }
}

// Exponential backoff with full jitter: a uniform delay from zero to
// min(cap, base * 2^attempt).
function backoffDelay(attempt) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.random() * ceiling;
}

// ---------------------------------------------------------------------------
// Moving back home: after a failover, return to connection.urls[0]
// ---------------------------------------------------------------------------
//
// urls[0] is the edge this page prefers (its own, or the nearest one). After
// an outage the reconnect loop settles on whichever edge answered first, so
// while a welcomed socket to another edge is open, a probe WebSocket to
// urls[0] opens every HOME_PROBE_INTERVAL_MS. When one opens, the page closes
// the probe and moves through the normal connect path. Only one probe or
// probe timer exists at a time, each runs only while welcomed away from home,
// and every close, connect and stop cancels it, so a probe cannot act on a
// socket that the reconnect loop has replaced.

function isAwayFromHome() {
  return connection.urls.length > 1 && connection.urls[connection.urlIndex] !== connection.urls[0];
}

function canMoveHome() {
  return !connection.stopped && connection.welcomed && connection.socket !== null && isAwayFromHome();
}

function scheduleHomeProbe() {
  stopHomeProbe();
  if (!canMoveHome()) {
    return;
  }
  const delay = Math.min(HOME_PROBE_MAX_INTERVAL_MS, HOME_PROBE_INTERVAL_MS * 2 ** connection.homeMoveFailures);
  connection.homeProbeTimer = setTimeout(probeHome, delay);
}

function probeHome() {
  connection.homeProbeTimer = null;
  if (!canMoveHome()) {
    return;
  }
  const url = connection.urls[0];
  let probe;
  try {
    probe = new WebSocket(url);
  } catch (error) {
    console.warn(`Probing the home edge ${url} failed (${error.message}).`);
    scheduleHomeProbe();
    return;
  }
  connection.homeProbe = probe;
  connection.homeProbeTimer = setTimeout(() => endHomeProbe(probe, false), HOME_PROBE_TIMEOUT_MS);
  probe.addEventListener("open", () => endHomeProbe(probe, true));
  probe.addEventListener("error", () => endHomeProbe(probe, false));
  probe.addEventListener("close", () => endHomeProbe(probe, false));
}

// The first of open, error, close and timeout settles a probe; the later
// events find it no longer current and do nothing.
function endHomeProbe(probe, opened) {
  if (probe !== connection.homeProbe) {
    return;
  }
  connection.homeProbe = null;
  clearTimeout(connection.homeProbeTimer);
  connection.homeProbeTimer = null;
  probe.close(1000, "home edge probe");
  if (opened && canMoveHome()) {
    moveHome();
  } else {
    scheduleHomeProbe();
  }
}

function stopHomeProbe() {
  clearTimeout(connection.homeProbeTimer);
  connection.homeProbeTimer = null;
  const probe = connection.homeProbe;
  connection.homeProbe = null;
  if (probe) {
    probe.close(1000, "home edge probe");
  }
}

// Leave the current edge for urls[0] through the normal connect path. The
// hello still carries last_seq, which the home edge cannot resume from, so it
// sends a snapshot. The welcome resends the outbox as after any reconnect.
function moveHome() {
  const socket = connection.socket;
  console.info(`The home edge ${connection.urls[0]} accepts sockets again; moving there from ${socket.url}.`);
  // Detach the socket first so that handleClose ignores its close.
  connection.socket = null;
  connection.welcomed = false;
  clearTimeout(connection.welcomeTimer);
  socket.close(1000, "moving to the home edge");

  connection.urlIndex = 0;
  connection.attempt = 0;
  connection.movingHome = true;
  connect();
}

// A move whose socket closed before the welcome slows the next probes down,
// so a home edge that accepts sockets but cannot serve the room does not pull
// the page back and forth every HOME_PROBE_INTERVAL_MS.
function noteHomeMoveFailed() {
  if (connection.movingHome) {
    connection.movingHome = false;
    connection.homeMoveFailures += 1;
  }
}

function sendFrame(frame) {
  const socket = connection.socket;
  if (!socket || !connection.welcomed || socket.readyState !== WebSocket.OPEN) {
    return false;
  }
  socket.send(JSON.stringify(frame));
  if (frame.id) {
    intentSentAt.set(frame.id, Date.now());
  }
  return true;
}

function checkAckTimeouts() {
  const socket = connection.socket;
  if (!socket || !connection.welcomed) {
    return;
  }
  const now = Date.now();
  for (const sentAt of intentSentAt.values()) {
    if (now - sentAt > ACK_TIMEOUT_MS) {
      intentSentAt.clear();
      abandonSocket(socket, `no ack for an intent within ${ACK_TIMEOUT_MS / 1000} s`);
      return;
    }
  }
}

setInterval(checkAckTimeouts, 1000);

// ---------------------------------------------------------------------------
// Frames from the edge
// ---------------------------------------------------------------------------

function handleWelcome(frame) {
  if (frame.room !== state.roomId) {
    rejectOtherRoom(frame.room);
    return;
  }
  connection.welcomed = true;
  connection.attempt = 0;
  clearTimeout(connection.welcomeTimer);
  if (connection.movingHome || !isAwayFromHome()) {
    connection.movingHome = false;
    connection.homeMoveFailures = 0;
  }
  state.user = frame.user;
  setRole(frame.role);
  setConnectionState("connected", `Connected to ${frame.edge} in ${frame.region}`);
  intentSentAt.clear();
  resendOutbox();
  scheduleHomeProbe();
}

// The edge joins the room named in the token, whatever room the address names.
// Showing that room under this address would swap rooms without notice, so
// the page stops before it shows or sends anything.
function rejectOtherRoom(tokenRoom) {
  const expectedRoom = state.roomId;
  const source = state.tokenSource === "link" ? "This link's token" : "The saved token";
  stopConnection();
  if (state.tokenSource === "storage") {
    forgetSession(expectedRoom);
  }
  dom.roomView.hidden = true;
  setConnectionState("closed", "Not connected");
  showError(`${source} belongs to room ${tokenRoom}, not ${expectedRoom}.`, { persistent: true });
}

function handleSnapshot(frame) {
  state.lastSeq = frame.seq;
  setRoom(frame.room);
  replaceQuestions(frame.questions || []);
  state.myVotes.clear();
  mergeMyVotes(frame.mine || {});
}

function handlePatch(frame) {
  // A patch at or below the last seq was already applied before a reconnect.
  if (state.lastSeq !== null && frame.seq <= state.lastSeq) {
    return;
  }
  state.lastSeq = frame.seq;
  if (frame.room) {
    setRoom(frame.room);
  }
  upsertQuestions(frame.questions || []);
  removeQuestions(frame.removed || []);
}

function handleMine(frame) {
  // A resumed connection's refresh lists all of my votes, so votes it does
  // not name were cleared while this page was away.
  if (frame.replace) {
    for (const questionId of [...state.myVotes.keys()]) {
      if (!(frame.votes && questionId in frame.votes)) {
        setMyVote(questionId, 0);
      }
    }
  }
  mergeMyVotes(frame.votes || {});
  upsertQuestions(frame.questions || []);
  removeQuestions(frame.removed || []);
}

function handleAck(frame) {
  intentSentAt.delete(frame.id);
  const intent = state.outbox.get(frame.id);
  if (!intent) {
    return;
  }
  if (frame.status === "accepted") {
    state.acceptedIntents.add(frame.id);
    markIntentDirty(intent);
    return;
  }
  if (frame.status === "committed") {
    // The vote is stored, so it stays highlighted even before the "mine"
    // frame that reports it arrives.
    if (intent.type === "vote") {
      setMyVote(intent.question, intent.value);
    }
    if (intent.type === "ban") {
      recordBan(intent);
    }
    clearBannedMessage();
    dropIntent(frame.id);
    if (intent.type === "settings" && !hasOutstandingSettings()) {
      showSettingsMessage("Settings saved", "success", SETTINGS_SAVED_DURATION_MS);
    }
  }
}

function handleErrorFrame(frame) {
  if (TOKEN_ERROR_CODES.has(frame.code)) {
    handleTokenRejected(frame.message || "Your session is no longer valid; join the room again.");
    return;
  }
  const message = frame.message || `The edge reported an error (${frame.code}).`;
  if (frame.id) {
    intentSentAt.delete(frame.id);
  }
  if (frame.code === "rate_limited" && !frame.id) {
    // The edge dropped frames without naming them: resend, after a second,
    // every intent it has not accepted yet. Their ack clocks restart when
    // they are sent again.
    for (const id of [...intentSentAt.keys()]) {
      if (!state.acceptedIntents.has(id)) {
        intentSentAt.delete(id);
      }
    }
    scheduleRateLimitedResend();
  }
  if (frame.code === "banned") {
    state.bannedMessage = message;
    ui.roomDirty = true;
  }
  const intent = frame.id ? dropIntent(frame.id) : null;
  restoreRejectedQuestion(intent);
  if (intent?.type === "settings") {
    showSettingsError(message);
    return;
  }
  showError(message);
}

// Show a rejected settings change beside the Save button, and keep the
// form's values so that the host can correct them. A toast repeats the
// message when the settings panel is collapsed.
function showSettingsError(message) {
  ui.settingsEdited = true;
  showSettingsMessage(message, "error");
  if (!dom.settingsDetails.open) {
    showError(message);
  }
}

// Put the text of a rejected question back into an empty composer, so the
// user can fix it instead of typing it again.
function restoreRejectedQuestion(intent) {
  if (intent?.type !== "ask" || dom.askText.value) {
    return;
  }
  dom.askText.value = intent.text;
  updateComposer();
}

// ---------------------------------------------------------------------------
// Room state
// ---------------------------------------------------------------------------

function setRoom(room) {
  const previousPinned = state.room?.pinned ?? null;
  const previousDownvotes = state.room?.downvotes_allowed;
  state.room = room;
  if (previousPinned !== room.pinned) {
    markQuestionDirty(previousPinned);
    markQuestionDirty(room.pinned);
  }
  if (previousDownvotes !== room.downvotes_allowed) {
    markAllQuestionsDirty();
  }
  ui.roomDirty = true;
  ui.orderDirty = true;
  scheduleRender();
}

function setRole(role) {
  state.role = role;
  const staff = isStaff();
  setText(dom.role, role ? `Role: ${role}` : "");
  dom.role.hidden = !role;
  document.body.classList.toggle("is-staff", staff);
  document.body.classList.toggle("is-host", role === "host");
  dom.statusFilterField.hidden = !staff;
  dom.hostSettings.hidden = role !== "host";
  ui.outboxDirty = true;
  if (!staff) {
    state.statusFilter = "all";
    dom.statusFilter.value = "all";
  }
  markAllQuestionsDirty();
  ui.roomDirty = true;
  scheduleRender();
}

function isStaff() {
  return STAFF_ROLES.has(state.role);
}

function replaceQuestions(questions) {
  for (const id of state.questions.keys()) {
    markQuestionDirty(id);
  }
  state.questions.clear();
  upsertQuestions(questions);
}

function upsertQuestions(questions) {
  for (const question of questions) {
    state.questions.set(question.id, question);
    markQuestionDirty(question.id);
    if (state.outbox.has(question.id)) {
      ui.outboxDirty = true;
    }
  }
}

function removeQuestions(ids) {
  for (const id of ids) {
    state.questions.delete(id);
    markQuestionDirty(id);
  }
}

function mergeMyVotes(votes) {
  for (const [questionId, value] of Object.entries(votes)) {
    setMyVote(questionId, value);
  }
}

function setMyVote(questionId, value) {
  if (value === 0) {
    state.myVotes.delete(questionId);
  } else {
    state.myVotes.set(questionId, value);
  }
  markQuestionDirty(questionId);
}

function isPinned(questionId) {
  return Boolean(state.room?.pinned) && state.room.pinned === questionId;
}

// ---------------------------------------------------------------------------
// Intents and the outbox
// ---------------------------------------------------------------------------

// The outbox is kept in this tab's sessionStorage, so intents the edge has
// not committed survive a reload and are resent after the next welcome.
// Each tab keeps its own: two tabs never resend each other's intents.
function storeOutbox() {
  if (!state.roomId) {
    return;
  }
  const key = `ama.outbox.${state.roomId}`;
  try {
    if (state.outbox.size) {
      sessionStorage.setItem(key, JSON.stringify([...state.outbox.values()]));
    } else {
      sessionStorage.removeItem(key);
    }
  } catch (error) {
    console.warn(`Storing the outbox of room ${state.roomId} failed (${error.message}); unsent intents will not survive a reload.`);
  }
}

// Replace the outbox with the one stored for `roomId`, keeping only entries
// shaped like intents.
function restoreOutbox(roomId) {
  state.outbox.clear();
  try {
    const stored = JSON.parse(sessionStorage.getItem(`ama.outbox.${roomId}`) || "[]");
    for (const frame of Array.isArray(stored) ? stored : []) {
      if (frame && typeof frame.id === "string" && typeof frame.type === "string") {
        state.outbox.set(frame.id, frame);
      }
    }
  } catch (error) {
    console.warn(`Reading the stored outbox of room ${roomId} failed (${error.message}).`);
  }
}

function submitIntent(fields) {
  const frame = { ...fields, id: newIntentId() };
  state.outbox.set(frame.id, frame);
  storeOutbox();
  sendFrame(frame);
  markIntentDirty(frame);
  renderNow();
  return frame;
}

function resendOutbox() {
  state.acceptedIntents.clear();
  for (const frame of state.outbox.values()) {
    sendFrame(frame);
    markIntentDirty(frame);
  }
}

let rateLimitedResend = null;

// Resend the outbox intents the edge has not accepted, RESEND_PER_SECOND at
// a time, one second apart, starting a second after the error.
function scheduleRateLimitedResend() {
  if (rateLimitedResend !== null) {
    return;
  }
  const resendBatch = (frames) => {
    const waiting = frames.filter((frame) => state.outbox.has(frame.id) && !state.acceptedIntents.has(frame.id));
    waiting.slice(0, RESEND_PER_SECOND).forEach(sendFrame);
    if (waiting.length > RESEND_PER_SECOND) {
      rateLimitedResend = setTimeout(() => resendBatch(waiting.slice(RESEND_PER_SECOND)), 1000);
    } else {
      rateLimitedResend = null;
    }
  };
  rateLimitedResend = setTimeout(() => resendBatch([...state.outbox.values()]), RATE_LIMITED_WAIT_MS);
}

function dropIntent(id) {
  const intent = state.outbox.get(id);
  if (!intent) {
    return null;
  }
  state.outbox.delete(id);
  state.acceptedIntents.delete(id);
  storeOutbox();
  markIntentDirty(intent);
  return intent;
}

function markIntentDirty(intent) {
  ui.outboxDirty = true;
  if (intent.question) {
    markQuestionDirty(intent.question);
  }
  if (intent.type === "ban") {
    markAuthorQuestionsDirty(intent.user);
  }
  scheduleRender();
}

// crypto.randomUUID exists only in secure contexts (HTTPS or loopback), so
// an edge served over plain HTTP elsewhere gets a version 4 UUID built from
// getRandomValues, which every context has.
function newIntentId() {
  if (typeof crypto.randomUUID === "function") {
    return crypto.randomUUID();
  }
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// The vote to display: the latest one still in the outbox, else the stored one.
function effectiveVote(questionId) {
  let value = state.myVotes.get(questionId) ?? 0;
  for (const frame of state.outbox.values()) {
    if (frame.type === "vote" && frame.question === questionId) {
      value = frame.value;
    }
  }
  return value;
}

function hasUnacceptedIntent(questionId) {
  for (const frame of state.outbox.values()) {
    if (frame.question === questionId && !state.acceptedIntents.has(frame.id)) {
      return true;
    }
  }
  return false;
}

function vote(questionId, direction) {
  const value = effectiveVote(questionId) === direction ? 0 : direction;
  submitIntent({ type: "vote", question: questionId, value });
}

function moderate(questionId, action) {
  submitIntent({ type: "moderate", question: questionId, action });
}

// One listener per list handles the vote and moderation buttons of every question.
function handleQuestionClick(event) {
  const button = event.target.closest("button");
  const item = button?.closest("[data-question-id]");
  if (!item) {
    return;
  }
  const questionId = item.dataset.questionId;
  if (button.dataset.vote) {
    vote(questionId, Number(button.dataset.vote));
  } else if (button.dataset.action) {
    moderate(questionId, button.dataset.action);
  } else if (button.hasAttribute("data-ban-author")) {
    banAuthor(questionId);
  }
}

// ---------------------------------------------------------------------------
// Composer
// ---------------------------------------------------------------------------

// Lengths count Unicode code points after NFC normalization, the unit the
// edge checks max_question_length in.
function countCharacters(text) {
  return [...text.normalize("NFC")].length;
}

function maxQuestionLength() {
  return state.room?.max_question_length ?? DEFAULT_MAX_QUESTION_LENGTH;
}

function questionsClosed() {
  return state.room !== null && !state.room.questions_open;
}

function updateComposer() {
  const max = maxQuestionLength();
  const count = countCharacters(dom.askText.value);
  const closed = questionsClosed();
  const blocked = closed && !isStaff();

  const tooLong = count > max;
  setText(dom.askCounter, `${count} / ${max}`);
  dom.askCounter.classList.toggle("is-over", tooLong);
  setText(dom.askTooLong, tooLong ? `Too long: at most ${max} characters.` : "");
  dom.askTooLong.hidden = !tooLong;
  dom.askText.disabled = blocked;
  dom.askSubmit.disabled = blocked || state.room === null || !dom.askText.value.trim() || tooLong;
  dom.anonymousOption.hidden = !state.room?.anonymous_allowed;

  let note = "";
  if (state.bannedMessage) {
    note = state.bannedMessage;
  } else if (blocked) {
    note = "The host has closed questions. You can still vote.";
  } else if (closed) {
    note = "Questions are closed to the audience; as staff you can still ask.";
  } else if (state.room?.pre_moderation && !isStaff()) {
    note = "A moderator reviews questions before everyone sees them.";
  }
  setText(dom.composerNote, note);
  dom.composerNote.hidden = !note;
}

function handleAskSubmit(event) {
  event.preventDefault();
  updateComposer();
  if (dom.askSubmit.disabled) {
    return;
  }
  const anonymous = Boolean(state.room.anonymous_allowed) && dom.askAnonymous.checked;
  clearError();
  submitIntent({ type: "ask", text: dom.askText.value, anonymous });
  dom.askText.value = "";
  dom.askAnonymous.checked = false;
  updateComposer();
}

function handleAskKeydown(event) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    dom.askForm.requestSubmit();
  }
}

// ---------------------------------------------------------------------------
// Host settings
// ---------------------------------------------------------------------------

function handleSettingsSubmit(event) {
  event.preventDefault();
  if (!state.room) {
    return;
  }
  const changes = readSettingsChanges();
  if (typeof changes === "string") {
    showSettingsMessage(changes, "error");
    return;
  }
  if (Object.keys(changes).length === 0) {
    showSettingsMessage("No changes to save.");
    return;
  }
  ui.settingsEdited = false;
  showSettingsMessage("");
  submitIntent({ type: "settings", changes });
}

// Return the settings that differ from the room's, or a message naming the invalid field.
function readSettingsChanges() {
  const form = dom.settingsForm.elements;
  const room = state.room;
  const changes = {};

  const title = dom.settingsTitle.value.trim();
  if (!title) {
    return "The title is empty; enter a title.";
  }
  if (title !== room.title) {
    changes.title = title;
  }

  for (const key of SETTING_FLAGS) {
    if (form[key].checked !== room[key]) {
      changes[key] = form[key].checked;
    }
  }

  const [low, high] = QUESTION_LENGTH_RANGE;
  const maxLength = Number(dom.settingsMaxLength.value);
  if (!Number.isInteger(maxLength) || maxLength < low || maxLength > high) {
    return `The maximum question length must be a whole number from ${low} to ${high}.`;
  }
  if (maxLength !== room.max_question_length) {
    changes.max_question_length = maxLength;
  }
  return changes;
}

function handleSettingsInput() {
  ui.settingsEdited = true;
  showSettingsMessage("");
}

// Show `message` beside the Save button, styled by `kind` ("error",
// "success" or "" for a plain note). A positive `durationMs` clears it after
// that time unless another message replaced it.
function showSettingsMessage(message, kind = "", durationMs = 0) {
  clearTimeout(ui.settingsMessageTimer);
  ui.settingsMessage = message;
  ui.settingsMessageKind = kind;
  if (message && durationMs > 0) {
    ui.settingsMessageTimer = setTimeout(() => showSettingsMessage(""), durationMs);
  }
  renderSettingsStatus();
}

function hasOutstandingSettings() {
  for (const frame of state.outbox.values()) {
    if (frame.type === "settings") {
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------
// Bans
// ---------------------------------------------------------------------------
//
// Staff views of questions carry author_id. A ban is an intent like any
// other, so it waits in the outbox until the room commits or rejects it. The
// room does not send its ban list, so this page lists only the bans it made
// itself, and only until the page reloads.

function banAuthor(questionId) {
  const question = state.questions.get(questionId);
  if (!question || !canBanAuthor(question)) {
    return;
  }
  const label = banLabel(question);
  const prompt = `Ban ${isolateText(label)}? They can still read this room, but cannot ask, vote or moderate until you unban them.`;
  if (!confirm(prompt)) {
    return;
  }
  state.banLabels.set(question.author_id, label);
  submitIntent({ type: "ban", user: question.author_id, banned: true });
}

function unbanUser(userId) {
  if (outstandingBan(userId)) {
    return;
  }
  submitIntent({ type: "ban", user: userId, banned: false });
}

function canBanAuthor(question) {
  const authorId = question.author_id;
  return typeof authorId === "string" && authorId !== "" && authorId !== state.user && !isBannedHere(authorId);
}

// Name an anonymous author by the start of their question, because staff
// have no other way to tell anonymous authors apart.
function banLabel(question) {
  if (question.author != null) {
    return question.author;
  }
  const characters = [...question.text];
  const excerpt = characters.slice(0, BAN_LABEL_EXCERPT_LENGTH).join("");
  const ellipsis = characters.length > BAN_LABEL_EXCERPT_LENGTH ? "…" : "";
  return `the anonymous author of "${excerpt}${ellipsis}"`;
}

// Tell whether this page has banned the user. The latest ban intent still in
// the outbox decides, else the bans the room committed.
function isBannedHere(userId) {
  const pending = outstandingBan(userId);
  return pending ? pending.banned : state.bannedUsers.has(userId);
}

function outstandingBan(userId) {
  let latest = null;
  for (const frame of state.outbox.values()) {
    if (frame.type === "ban" && frame.user === userId) {
      latest = frame;
    }
  }
  return latest;
}

function recordBan(intent) {
  if (intent.banned) {
    state.bannedUsers.add(intent.user);
  } else {
    state.bannedUsers.delete(intent.user);
  }
}

function markAuthorQuestionsDirty(userId) {
  for (const question of state.questions.values()) {
    if (question.author_id === userId) {
      markQuestionDirty(question.id);
    }
  }
}

function clearBannedMessage() {
  if (state.bannedMessage) {
    state.bannedMessage = "";
    ui.roomDirty = true;
    scheduleRender();
  }
}

// List the committed bans and the bans and unbans still in the outbox.
function renderBanList() {
  const userIds = new Set(state.bannedUsers);
  for (const frame of state.outbox.values()) {
    if (frame.type === "ban") {
      userIds.add(frame.user);
    }
  }
  const items = [...userIds].map(createBanListItem);
  dom.banList.replaceChildren(...items);
  dom.banListPanel.hidden = !isStaff() || items.length === 0;
}

function createBanListItem(userId) {
  const pending = outstandingBan(userId);
  const item = document.createElement("li");
  item.className = "banned-user";
  item.dataset.testid = "banned-user";

  const name = document.createElement("span");
  name.className = "banned-user-name";
  name.dir = "auto";
  name.textContent = state.banLabels.get(userId) ?? userId;

  const status = document.createElement("span");
  status.className = "banned-user-status";
  if (pending) {
    status.textContent = pending.banned ? "banning…" : "unbanning…";
  } else {
    status.textContent = "banned";
  }

  const button = document.createElement("button");
  button.type = "button";
  button.className = "button button-small";
  button.dataset.testid = "unban";
  button.dataset.user = userId;
  button.textContent = "Unban";
  button.disabled = Boolean(pending);

  item.append(name, status, button);
  return item;
}

function handleBanListClick(event) {
  const button = event.target.closest("button[data-user]");
  if (button) {
    unbanUser(button.dataset.user);
  }
}

// ---------------------------------------------------------------------------
// Moderator invitations (host only)
// ---------------------------------------------------------------------------

async function handleInviteClick() {
  dom.inviteModerator.disabled = true;
  showInviteStatus("Creating a moderator code…");
  try {
    const code = await requestModeratorCode();
    showModeratorInvite(code);
    showInviteStatus("New moderator code created. Share the link only with the people who should moderate.", "success");
  } catch (error) {
    showInviteStatus(error.message, "error");
  } finally {
    dom.inviteModerator.disabled = false;
  }
}

// Ask the core for a new moderator code. The core authorizes the request by
// the host token. When that token has expired, the page refreshes it once and
// repeats the request.
async function requestModeratorCode() {
  let { response, body } = await postModeratorCode();
  if (response.status === 401 && body?.error?.code === "token_expired") {
    const refreshed = await refreshToken(state.roomId, state.token);
    if (refreshed) {
      adoptRefreshedToken(refreshed);
      ({ response, body } = await postModeratorCode());
    }
  }
  if (!response.ok) {
    throw new Error(body?.error?.message || `Creating a moderator code failed with HTTP status ${response.status}; try again.`);
  }
  if (typeof body?.code !== "string" || !body.code) {
    throw new Error("The server's response is missing the moderator code; try again.");
  }
  return body.code;
}

async function postModeratorCode() {
  const core = state.config.core.replace(/\/+$/, "");
  const url = `${core}/v1/rooms/${encodeURIComponent(state.roomId)}/moderator-code`;
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
    });
  } catch (error) {
    throw new Error(`Could not reach the server at ${core} (${error.message}); check your connection and try again.`);
  }
  return { response, body: await readJsonBody(response) };
}

// Use a refreshed token from now on. The next hello sends it, and a session
// from storage stores it again, but a token from a link is never stored.
function adoptRefreshedToken(token) {
  state.token = token;
  if (state.tokenSource === "storage") {
    storeSession(state.roomId, token, connection.urls);
  }
}

function showModeratorInvite(code) {
  const link = new URL("/", location.origin);
  link.searchParams.set("room", state.roomId);
  link.searchParams.set("code", code);
  setText(dom.moderatorCode, code);
  dom.moderatorLink.value = link.href;
  dom.inviteResult.hidden = false;
}

// navigator.clipboard exists only in secure contexts and may be denied, so
// the fallback selects the link for the user to copy.
async function copyModeratorLink() {
  const link = dom.moderatorLink.value;
  if (!link) {
    return;
  }
  try {
    await navigator.clipboard.writeText(link);
    showInviteStatus("Link copied.", "success", COPIED_DURATION_MS);
  } catch (error) {
    console.info(`Copying to the clipboard failed (${error.message}); selecting the link instead.`);
    dom.moderatorLink.focus();
    dom.moderatorLink.select();
    showInviteStatus("Copying failed; the link is selected, so press Ctrl+C (⌘C on a Mac) to copy it.");
  }
}

// Show `message` beside the invite button, styled by `kind` ("error",
// "success" or "" for a plain note), and clear it after `durationMs` if that
// is positive.
function showInviteStatus(message, kind = "", durationMs = 0) {
  clearTimeout(ui.inviteStatusTimer);
  setText(dom.inviteStatus, message);
  dom.inviteStatus.dataset.kind = kind;
  if (message && durationMs > 0) {
    ui.inviteStatusTimer = setTimeout(() => showInviteStatus(""), durationMs);
  }
}

// Forget the bans, the banned message and the invitation of the previous
// room when the page opens another room.
function resetStaffTools() {
  state.bannedUsers.clear();
  state.banLabels.clear();
  state.bannedMessage = "";
  dom.inviteResult.hidden = true;
  setText(dom.moderatorCode, "");
  dom.moderatorLink.value = "";
  showInviteStatus("");
}

// ---------------------------------------------------------------------------
// Sorting and filtering
// ---------------------------------------------------------------------------

function setSort(sort) {
  state.sort = sort;
  for (const button of dom.sortButtons) {
    button.setAttribute("aria-pressed", String(button.dataset.sort === sort));
  }
  ui.orderDirty = true;
  renderNow();
}

function handleFilterChange() {
  state.statusFilter = dom.statusFilter.value;
  ui.orderDirty = true;
  renderNow();
}

function showPendingQuestions() {
  dom.statusFilter.value = "pending";
  handleFilterChange();
}

// Popular: score (highest first), then creation time, then id.
function comparePopular(a, b) {
  return b.score - a.score || a.created_at - b.created_at || compareIds(a.id, b.id);
}

// Recent: creation time (newest first), then id.
function compareRecent(a, b) {
  return b.created_at - a.created_at || compareIds(a.id, b.id);
}

function compareIds(a, b) {
  if (a === b) {
    return 0;
  }
  return a < b ? -1 : 1;
}

function matchesStatusFilter(question) {
  return state.statusFilter === "all" || question.status === state.statusFilter;
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

function markQuestionDirty(questionId) {
  if (!questionId) {
    return;
  }
  ui.dirtyQuestions.add(questionId);
  ui.orderDirty = true;
  scheduleRender();
}

function markAllQuestionsDirty() {
  for (const id of state.questions.keys()) {
    ui.dirtyQuestions.add(id);
  }
  ui.orderDirty = true;
  scheduleRender();
}

// requestAnimationFrame does not run in background tabs, so a timer renders
// those; whichever fires first does the work and the other finds nothing.
function scheduleRender() {
  if (ui.renderScheduled) {
    return;
  }
  ui.renderScheduled = true;
  requestAnimationFrame(render);
  setTimeout(render, 100);
}

// Render at once after the user's own actions, so the page updates in the
// same task as the click instead of on the next frame.
function renderNow() {
  ui.renderScheduled = true;
  render();
}

function render() {
  if (!ui.renderScheduled) {
    return;
  }
  ui.renderScheduled = false;

  if (ui.roomDirty) {
    renderRoom();
  }
  if (ui.outboxDirty) {
    renderOutbox();
  }
  renderDirtyQuestions();
  if (ui.orderDirty) {
    renderOrder();
  }
}

function renderRoom() {
  ui.roomDirty = false;
  const room = state.room;
  if (room) {
    const title = room.title || room.id || state.roomId;
    setText(dom.roomTitle, title);
    document.title = `${isolateText(title)} · AMA Mesh`;
  }
  updateComposer();
  renderSettingsForm();
}

function renderSettingsForm() {
  const room = state.room;
  // Keep what the host is typing, and what they just sent, until it is settled.
  if (!room || ui.settingsEdited || hasOutstandingSettings()) {
    return;
  }
  const form = dom.settingsForm.elements;
  dom.settingsTitle.value = room.title ?? "";
  for (const key of SETTING_FLAGS) {
    form[key].checked = Boolean(room[key]);
  }
  dom.settingsMaxLength.value = String(room.max_question_length ?? DEFAULT_MAX_QUESTION_LENGTH);
}

function renderOutbox() {
  ui.outboxDirty = false;
  renderPendingAsks();
  renderBanList();
  renderSettingsStatus();
  renderSettingsForm();
}

// Questions the user sent that the room has not shown back yet.
function renderPendingAsks() {
  const items = [];
  for (const frame of state.outbox.values()) {
    if (frame.type === "ask" && !state.questions.has(frame.id)) {
      items.push(createPendingAskItem(frame));
    }
  }
  dom.pendingAsks.replaceChildren(...items);
  dom.pendingAsks.hidden = items.length === 0;
}

function createPendingAskItem(frame) {
  const item = document.createElement("li");
  item.className = "pending-ask";
  item.dataset.testid = "pending-question";
  const text = document.createElement("span");
  text.className = "pending-ask-text";
  text.dir = "auto";
  text.textContent = frame.text;
  const status = document.createElement("span");
  status.className = "sending";
  status.textContent = state.acceptedIntents.has(frame.id) ? "" : "sending…";
  item.append(text, status);
  return item;
}

// While a settings intent is in the outbox its progress shows: "Sending…"
// until the edge accepts it, then "Saving…" until the core commits it.
function renderSettingsStatus() {
  let message = ui.settingsMessage;
  let kind = ui.settingsMessageKind;
  let outstanding = false;
  let unaccepted = false;
  for (const frame of state.outbox.values()) {
    if (frame.type === "settings") {
      outstanding = true;
      unaccepted ||= !state.acceptedIntents.has(frame.id);
    }
  }
  if (outstanding) {
    message = unaccepted ? "Sending…" : "Saving…";
    kind = "";
  }
  setText(dom.settingsStatus, message);
  dom.settingsStatus.dataset.kind = kind;
}

function renderDirtyQuestions() {
  for (const id of ui.dirtyQuestions) {
    const question = state.questions.get(id);
    const card = ui.cards.get(id);
    if (!question) {
      removeCard(id);
    } else if (card) {
      updateCard(card, question);
    } else {
      cardFor(question);
    }
  }
  ui.dirtyQuestions.clear();
}

function cardFor(question) {
  let card = ui.cards.get(question.id);
  if (!card) {
    card = createCard(question.id);
    updateCard(card, question);
  }
  return card;
}

function createCard(questionId) {
  const root = dom.questionTemplate.content.firstElementChild.cloneNode(true);
  root.dataset.questionId = questionId;
  const part = (testId) => root.querySelector(`[data-testid="${testId}"]`);
  const card = {
    root,
    text: part("question-text"),
    author: root.querySelector(".author"),
    created: root.querySelector(".created"),
    createdAt: null,
    upButton: part("vote-up"),
    upCount: part("up-count"),
    downButton: part("vote-down"),
    downCount: part("down-count"),
    score: part("score"),
    status: part("status"),
    sending: part("sending"),
    moderation: root.querySelector(".moderation"),
    actions: [...root.querySelectorAll("[data-action]")],
    banButton: part("moderate-ban"),
  };
  ui.cards.set(questionId, card);
  return card;
}

function removeCard(questionId) {
  const card = ui.cards.get(questionId);
  if (card) {
    card.root.remove();
    ui.cards.delete(questionId);
  }
}

function updateCard(card, question) {
  const pinned = isPinned(question.id);
  setText(card.text, question.text);
  setText(card.author, question.author ?? "Anonymous");
  card.author.classList.toggle("is-anonymous", question.author == null);
  updateCardTime(card, question.created_at, Date.now());
  updateCardVotes(card, question);
  updateCardStatus(card, question.status);
  updateCardModeration(card, question, pinned);
  card.root.classList.toggle("is-pinned", pinned);
  card.sending.hidden = !hasUnacceptedIntent(question.id);
}

function updateCardTime(card, createdAt, now) {
  if (card.createdAt !== createdAt && Number.isFinite(createdAt)) {
    const date = new Date(createdAt);
    card.created.dateTime = date.toISOString();
    card.created.title = date.toLocaleString("en");
  }
  card.createdAt = createdAt;
  setText(card.created, formatRelativeTime(createdAt, now));
}

function updateCardVotes(card, question) {
  const myVote = effectiveVote(question.id);
  const votable = VOTABLE_STATUSES.has(question.status);
  setText(card.upCount, String(question.up));
  setText(card.downCount, String(question.down));
  setText(card.score, String(question.score));
  updateVoteButton(card.upButton, myVote === 1, votable, `Upvote, ${question.up} up`, "Upvote");
  updateDownvoteButton(card, question, myVote, votable);
}

// With downvotes off, existing downvotes still count in the score, so the ▼
// count stays visible while it is above zero. The button then only lets me
// remove my own downvote, which the edge accepts as a vote of 0.
function updateDownvoteButton(card, question, myVote, votable) {
  const button = card.downButton;
  if (state.room?.downvotes_allowed !== false) {
    button.hidden = false;
    updateVoteButton(button, myVote === -1, votable, `Downvote, ${question.down} down`, "Downvote");
    return;
  }
  button.hidden = question.down === 0;
  if (myVote === -1) {
    const title = "Downvotes are off in this room. Select to remove your downvote.";
    updateVoteButton(button, true, votable, `Remove your downvote, ${question.down} down`, title);
  } else {
    const title = "Downvotes are off in this room";
    updateVoteButton(button, false, false, `${question.down} down; downvotes are off in this room`, title);
  }
}

function updateVoteButton(button, pressed, enabled, label, title) {
  button.setAttribute("aria-pressed", String(pressed));
  button.classList.toggle("is-mine", pressed);
  button.disabled = !enabled;
  button.setAttribute("aria-label", label);
  button.title = title;
}

function updateCardStatus(card, status) {
  card.root.dataset.status = status;
  setText(card.status, status);
  card.status.hidden = status === "live";
}

// The moderation row is hidden, margin included, when no button in it shows.
function updateCardModeration(card, question, pinned) {
  const staff = isStaff();
  let visibleCount = 0;
  for (const button of card.actions) {
    const visible = staff && MODERATION_RULES[button.dataset.action](question, pinned);
    button.hidden = !visible;
    visibleCount += visible ? 1 : 0;
  }
  const banVisible = staff && canBanAuthor(question);
  card.banButton.hidden = !banVisible;
  visibleCount += banVisible ? 1 : 0;
  card.moderation.hidden = visibleCount === 0;
}

function renderOrder() {
  ui.orderDirty = false;
  const pinnedId = visiblePinnedId();
  const listed = [];
  const statusCounts = { all: 0, pending: 0, live: 0, answered: 0, hidden: 0 };
  for (const question of state.questions.values()) {
    statusCounts.all += 1;
    statusCounts[question.status] = (statusCounts[question.status] ?? 0) + 1;
    if (question.id !== pinnedId && matchesStatusFilter(question)) {
      listed.push(question);
    }
  }
  listed.sort(state.sort === "recent" ? compareRecent : comparePopular);

  placePinned(pinnedId);
  reorderChildren(dom.questionList, listed.map((question) => cardFor(question).root));
  renderCounts(listed.length + (pinnedId ? 1 : 0), statusCounts);
  renderEmptyState(listed.length === 0 && pinnedId === null);
}

// The pinned question shows above the list only when it passes the status
// filter, so that a filtered view contains only questions of that status.
function visiblePinnedId() {
  const pinned = state.room?.pinned ? state.questions.get(state.room.pinned) : null;
  return pinned && matchesStatusFilter(pinned) ? pinned.id : null;
}

// Before the first snapshot the list is empty because nothing has arrived,
// so the empty-state text waits for the room.
function renderEmptyState(empty) {
  dom.emptyNote.hidden = !empty || state.room === null;
  setText(dom.emptyNote, EMPTY_STATE_TEXT[state.statusFilter] ?? EMPTY_STATE_TEXT.all);
}

function placePinned(pinnedId) {
  const card = pinnedId ? cardFor(state.questions.get(pinnedId)) : null;
  dom.pinned.hidden = !card;
  if (!card) {
    dom.pinnedList.replaceChildren();
  } else if (dom.pinnedList.firstElementChild !== card.root) {
    dom.pinnedList.replaceChildren(card.root);
  }
}

function renderCounts(visibleCount, statusCounts) {
  setText(dom.questionCount, `(${visibleCount})`);
  const pendingCount = statusCounts.pending ?? 0;
  setText(dom.pendingBadge, `${pendingCount} pending`);
  dom.pendingBadge.hidden = !isStaff() || pendingCount === 0;
  if (!isStaff()) {
    return;
  }
  for (const option of dom.statusFilter.options) {
    if (option.dataset.label === undefined) {
      option.dataset.label = option.textContent;
    }
    setText(option, `${option.dataset.label} (${statusCounts[option.value] ?? 0})`);
  }
}

// Put `elements` into `container` in the given order with few DOM moves:
// the elements along a longest increasing subsequence of their current
// positions stay where they are, and only the others are moved.
function reorderChildren(container, elements) {
  if (sameChildren(container, elements)) {
    return;
  }
  const targets = new Set(elements);
  for (const child of [...container.children]) {
    if (!targets.has(child)) {
      child.remove();
    }
  }

  const targetIndex = new Map(elements.map((element, index) => [element, index]));
  const current = [...container.children];
  const staying = new Set(
    longestIncreasingSubsequence(current.map((child) => targetIndex.get(child))).map((position) => current[position]),
  );

  let next = null;
  for (let index = elements.length - 1; index >= 0; index -= 1) {
    const element = elements[index];
    if (!staying.has(element)) {
      container.insertBefore(element, next);
    }
    next = element;
  }
}

function sameChildren(container, elements) {
  const children = container.children;
  if (children.length !== elements.length) {
    return false;
  }
  return elements.every((element, index) => children[index] === element);
}

// Return the positions in `values` of one longest strictly increasing
// subsequence, in O(n log n) (patience sorting with back links).
function longestIncreasingSubsequence(values) {
  const tails = [];
  const previous = new Array(values.length);
  for (let i = 0; i < values.length; i += 1) {
    let low = 0;
    let high = tails.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (values[tails[middle]] < values[i]) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    previous[i] = low > 0 ? tails[low - 1] : -1;
    tails[low] = i;
  }

  const positions = [];
  for (let position = tails.length ? tails[tails.length - 1] : -1; position >= 0; position = previous[position]) {
    positions.push(position);
  }
  return positions.reverse();
}

function refreshTimes() {
  const now = Date.now();
  for (const card of ui.cards.values()) {
    setText(card.created, formatRelativeTime(card.createdAt, now));
  }
}

function formatRelativeTime(timestamp, now) {
  if (!Number.isFinite(timestamp)) {
    return "";
  }
  // A clock behind the server's would show times in the future; call those "just now".
  const seconds = Math.round((Math.min(timestamp, now) - now) / 1000);
  const elapsed = -seconds;
  if (elapsed < 45) {
    return "just now";
  }
  if (elapsed < 3600) {
    return relativeTimeFormat.format(Math.round(seconds / 60), "minute");
  }
  if (elapsed < 86400) {
    return relativeTimeFormat.format(Math.round(seconds / 3600), "hour");
  }
  return relativeTimeFormat.format(Math.round(seconds / 86400), "day");
}

// ---------------------------------------------------------------------------
// Header and messages
// ---------------------------------------------------------------------------

function setConnectionState(name, text) {
  const defaults = {
    idle: "Not joined",
    connecting: "Connecting…",
    reconnecting: "Reconnecting…",
  };
  dom.connectionState.dataset.state = name;
  setText(dom.connectionState, text || defaults[name] || name);
}

// Show `message` in the one error element: beside the join form while it is
// shown, else as a toast. The toast hides itself after TOAST_DURATION_MS
// unless `persistent` is set, for errors that stop the page.
function showError(message, { persistent = false } = {}) {
  const joining = !dom.joinView.hidden;
  const slot = joining ? dom.joinMessageSlot : dom.toastMessageSlot;
  if (dom.errorMessage.parentElement !== slot) {
    slot.append(dom.errorMessage);
  }
  setText(dom.errorMessage, message);
  dom.errorMessage.hidden = false;
  dom.toast.hidden = joining;

  clearTimeout(ui.toastTimer);
  if (!joining && !persistent) {
    ui.toastTimer = setTimeout(clearError, TOAST_DURATION_MS);
  }
}

function clearError() {
  clearTimeout(ui.toastTimer);
  setText(dom.errorMessage, "");
  dom.errorMessage.hidden = true;
  dom.toast.hidden = true;
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

function setText(node, text) {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

// Wrap user text in FIRST STRONG ISOLATE and POP DIRECTIONAL ISOLATE for
// plain-text places that CSS cannot reach. In the Unicode Bidirectional
// Algorithm the PDI also ends any override or embedding left open inside.
function isolateText(text) {
  return `\u2068${text}\u2069`;
}

function toCamelCase(id) {
  return id.replace(/-([a-z])/g, (match, letter) => letter.toUpperCase());
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
