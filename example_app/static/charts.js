// Small live charts in plain SVG, drawn by the page itself (no library, no CDN).
//
//   const chart = new Sparkline(container, { title: "round-trip time", unit: "ms" });
//   chart.push(12.3);   // once a second
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 200;
const HEIGHT = 52;

function svg(name, attributes = {}) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function formatValue(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const digits = Math.abs(value) >= 100 || Number.isInteger(value) ? 0 : 1;
  return `${value.toFixed(digits)}${unit ? ` ${unit}` : ""}`;
}

export class Sparkline {
  constructor(container, { title, unit = "", color = "#2563eb", capacity = 60, note = "" }) {
    this.title = title;
    this.unit = unit;
    this.capacity = capacity;
    this.values = [];
    this.figure = document.createElement("figure");
    this.figure.className = "chart";
    this.figure.dataset.title = title;
    const caption = document.createElement("figcaption");
    const label = document.createElement("span");
    label.textContent = title;
    this.valueLabel = document.createElement("b");
    caption.append(label, this.valueLabel);
    this.chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, preserveAspectRatio: "none", role: "img" });
    this.area = svg("polygon", { fill: color, "fill-opacity": "0.12", stroke: "none" });
    this.line = svg("polyline", { fill: "none", stroke: color, "stroke-width": "1.6", "vector-effect": "non-scaling-stroke" });
    this.chart.append(this.area, this.line);
    this.noteLabel = document.createElement("small");
    this.noteLabel.textContent = note;
    this.figure.append(caption, this.chart, this.noteLabel);
    container.append(this.figure);
  }

  set note(text) {
    this.noteLabel.textContent = text;
  }

  push(value) {
    this.values.push(Number.isFinite(value) ? value : 0);
    if (this.values.length > this.capacity) this.values.shift();
    this.valueLabel.textContent = formatValue(value, this.unit);
    this.draw();
  }

  // The points fill the width until there are `capacity` of them, then scroll.
  draw() {
    const top = Math.max(...this.values, 1e-9) * 1.15;
    const step = WIDTH / Math.max(this.values.length - 1, 1);
    const points = this.values.map((value, i) => {
      const y = HEIGHT - 2 - (value / top) * (HEIGHT - 4);
      return `${(i * step).toFixed(1)},${y.toFixed(1)}`;
    });
    this.line.setAttribute("points", points.join(" "));
    if (points.length > 1) this.area.setAttribute("points", `0,${HEIGHT} ${points.join(" ")} ${WIDTH},${HEIGHT}`);
  }
}
