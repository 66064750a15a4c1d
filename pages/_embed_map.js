// The task map of the Task embeddings page (pages/_embed_map.py mounts it with
// st.components.v2): plotly.js draws the scatter Python built (metaviz.embed_figures.map_data);
// hovering a point shows a card with the task's pictures and numbers; clicking a point sends its
// row back to Python, which opens that task on the Adaptation page.
//
// plotly.js comes from the server's copy inside the plotly Python package, never from a CDN:
// the dashboard must work offline. Card text goes in as textContent, never as HTML (class names
// can be an uploader's folder names); pictures only as data URIs of PNG or SVG images.

const PICTURE = /^data:image\/(png|svg\+xml);base64,[A-Za-z0-9+/=]+$/;
const CARD_OFFSET = 16; // pixels between the pointer and the card

function loadPlotly(url) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!window.__metavizPlotly) {
    window.__metavizPlotly = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = url;
      script.onload = () => (window.Plotly ? resolve(window.Plotly) : reject(new Error("no Plotly in " + url)));
      script.onerror = () => {
        window.__metavizPlotly = null; // a later render tries again
        reject(new Error("could not load " + url));
      };
      document.head.appendChild(script);
    });
  }
  return window.__metavizPlotly;
}

function rowOf(event) {
  const point = event && event.points && event.points[0];
  const custom = point && point.customdata;
  const row = Array.isArray(custom) ? custom[0] : null;
  return Number.isInteger(row) ? row : null;
}

function fillCard(card, data, row) {
  const content = data.cards[row];
  card.replaceChildren();
  if (!content) return false;
  const title = document.createElement("div");
  title.className = "metaviz-card-title";
  title.textContent = content.title;
  card.appendChild(title);
  if (typeof content.thumbnail === "string" && PICTURE.test(content.thumbnail)) {
    const picture = document.createElement("img");
    picture.className = "metaviz-card-picture";
    picture.src = content.thumbnail;
    picture.alt = data.picture_label;
    card.appendChild(picture);
  }
  for (const text of content.lines) {
    const line = document.createElement("div");
    line.textContent = text;
    card.appendChild(line);
  }
  const hint = document.createElement("div");
  hint.className = "metaviz-card-hint";
  hint.textContent = data.click_hint;
  card.appendChild(hint);
  card.dataset.row = String(row);
  return true;
}

function placeCard(map, card, mouse) {
  const box = map.getBoundingClientRect();
  let left = mouse.clientX - box.left + CARD_OFFSET;
  let top = mouse.clientY - box.top + CARD_OFFSET;
  // Flip to the pointer's other side where the card would leave the map.
  if (left + card.offsetWidth > box.width) left = Math.max(0, left - card.offsetWidth - 2 * CARD_OFFSET);
  if (top + card.offsetHeight > box.height) top = Math.max(0, top - card.offsetHeight - 2 * CARD_OFFSET);
  card.style.left = left + "px";
  card.style.top = top + "px";
}

function listen(state) {
  const { plot, card, map } = state;
  plot.on("plotly_hover", (event) => {
    const row = rowOf(event);
    if (row === null || !fillCard(card, state.data, row)) return;
    card.hidden = false;
    if (event.event) placeCard(map, card, event.event);
  });
  plot.on("plotly_unhover", () => {
    card.hidden = true;
  });
  plot.on("plotly_click", (event) => {
    const row = rowOf(event);
    if (row === null) return;
    card.hidden = true;
    state.status.textContent = state.data.opening.replace("{title}", state.data.cards[row].title);
    state.status.hidden = false;
    state.setTriggerValue("clicked", row);
  });
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  let state = parentElement.__metavizMap;
  if (!state) {
    // Built once per mounted map: later renders (new colours, a search) only redraw the plot.
    const map = document.createElement("div");
    map.className = "metaviz-map";
    const plot = document.createElement("div");
    plot.className = "metaviz-map-plot";
    const card = document.createElement("div");
    card.className = "metaviz-card";
    card.hidden = true;
    card.setAttribute("role", "tooltip");
    const status = document.createElement("div");
    status.className = "metaviz-map-status";
    status.setAttribute("role", "status");
    status.hidden = true;
    map.append(plot, card, status);
    parentElement.appendChild(map);
    state = parentElement.__metavizMap = { map, plot, card, status, listening: false };
  }
  state.data = data;
  state.setTriggerValue = setTriggerValue; // this render's: an older one may no longer reach Python
  state.status.hidden = true;
  state.plot.style.height = (data.figure.layout.height || 600) + "px";
  loadPlotly(data.plotly_url)
    .then((Plotly) => Plotly.react(state.plot, data.figure.data, data.figure.layout, data.config))
    .then(() => {
      if (!state.listening) {
        listen(state);
        state.listening = true;
      }
      state.map.dataset.ready = "true";
      state.map.dataset.revision = String(data.figure.layout.uirevision); // which map is drawn (tests wait on it)
    })
    .catch((error) => {
      state.status.textContent = data.load_failed + " (" + error.message + ")";
      state.status.hidden = false;
    });
}
