"""The demo page: a server-rendered HTML form (no JavaScript) served by Flask.

Why Flask: the page is one form and one result view rendered on the server, so a small WSGI
framework with a template engine (Jinja2, autoescaping) and a test client is all it needs; Flask is
widely used and maintained (Pallets), its development server (Werkzeug) is enough for a local
demo, and it pulls in no async stack.  FastAPI would add uvicorn, Starlette and python-multipart
for a page that does not use its strengths (typed JSON APIs).

Every request is validated field by field (:func:`qnn.apps.heart._form.parse_form`); invalid input
is shown beside its field with status 400, and any unexpected error becomes a one-line error page
(status 500): the server keeps serving.
"""

from __future__ import annotations

import threading

from flask import Flask, render_template_string, request

from qnn.apps.heart._form import FIELDS, parse_form
from qnn.apps.heart._model import LEVELS, HeartDemoModel

__all__ = ["create_app", "serve"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qnn heart-disease demo (research demo, not a medical device)</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;margin-bottom:1em}
.cols{display:flex;gap:2em;flex-wrap:wrap}.cols>section{flex:1 1 420px}
label{display:block;font-weight:600;margin-top:.6em}.unit,.hint{font-weight:400;color:#666;font-size:.9em}
input,select{font-size:1em;padding:.2em;width:14em}.error{color:#b00020;font-size:.9em;display:block}
.invalid{border:2px solid #b00020}button{margin-top:1em;font-size:1.05em;padding:.4em 1.2em}
.prob{font-size:2.2em;font-weight:700}table{border-collapse:collapse}td,th{padding:.15em .6em;text-align:left}
.card{background:#f6f6f6;padding:.5em 1em;margin-top:1.5em}
</style></head><body>
<div class="banner"><strong>Research demo, not a medical device.</strong> Do not use it to diagnose or treat anyone.</div>
<h1>Heart-disease risk from 11 clinical features (KACQ-DCNN)</h1>
<div class="cols">
<section>
<form method="post" action="/" novalidate id="patient-form">
{% for f in fields %}
<label for="{{ f.name }}">{{ f.label }}{% if f.unit %} <span class="unit">({{ f.unit }})</span>{% endif %}
 <span class="hint">allowed: {{ f.allowed }}{% if f.hint %}; {{ f.hint }}{% endif %}</span></label>
{% if f.choices %}
<select id="{{ f.name }}" name="{{ f.name }}"{% if errors.get(f.name) %} class="invalid"{% endif %}>
{% for v, text in f.choices %}<option value="{{ v }}"{% if values.get(f.name) == v %} selected{% endif %}>{{ text }}</option>{% endfor %}
</select>
{% else %}
<input id="{{ f.name }}" name="{{ f.name }}" type="text" inputmode="decimal" value="{{ values.get(f.name, '') }}"{% if errors.get(f.name) %} class="invalid"{% endif %}>
{% endif %}
{% if errors.get(f.name) %}<span class="error" id="error-{{ f.name }}">{{ errors[f.name] }}</span>{% endif %}
{% endfor %}
<label for="level">Confidence level of the prediction set</label>
<select id="level" name="level">
{% for lev in levels %}<option value="{{ lev }}"{% if lev == level %} selected{% endif %}>{{ (lev * 100) | round(0) | int }} %</option>{% endfor %}
</select>
{% if errors.get('level') %}<span class="error" id="error-level">{{ errors['level'] }}</span>{% endif %}
<br><button type="submit" id="submit">Predict</button>
</form>
</section>
<section id="result">
{% if failure %}<p class="error" id="failure">{{ failure }}</p>{% endif %}
{% if errors %}<p class="error" id="form-errors">Please correct the {{ errors|length }} highlighted field(s).</p>{% endif %}
{% if pred %}
<h2>Prediction</h2>
<p>Probability of heart disease:</p>
<p class="prob" id="probability" data-probability="{{ '%.10f' % pred.probability }}">{{ '%.2f' % (pred.probability * 100) }} %</p>
<p>Prediction set at {{ (pred.level * 100) | round(0) | int }} % confidence:
<strong id="prediction-set" data-labels="{{ pred.prediction_set | join('|') }}">{% if pred.prediction_set %}{{ pred.prediction_set | join(', ') }}{% else %}empty (no label is plausible at this level){% endif %}</strong></p>
<p class="hint" id="coverage" data-coverage="{{ '%.6f' % pred.coverage }}">On {{ metrics.n_test }} held-out patients (used neither for training nor for calibration)
the true diagnosis was inside the set for {{ '%.1f' % (pred.coverage * 100) }} % of them at this level (mean set size {{ '%.2f' % pred.mean_set_size }}).
A set with both labels means the model cannot decide at this confidence.</p>
<h3>What pushed this prediction up or down (Kernel SHAP)</h3>
{{ chart | safe }}
<p class="hint">Contribution of each feature to the probability of heart disease, relative to the average
over training patients (base {{ '%.3f' % base }}); red pushes towards heart disease, blue away from it.</p>
{% endif %}
</section>
</div>
<section class="card" id="model-card">
<h2>Model card</h2>
<p><strong>Model.</strong> KACQ-DCNN (Jahin et al., arXiv 2410.07446): KAN layers plus three 4-qubit circuits
({{ settings.n_layers }} entangling layer(s)), simulated exactly by qnn's torch engine; {{ settings.epochs }} training epochs
(weights of epoch {{ metrics.best_epoch }}, best validation accuracy), seed {{ settings.seed }}.</p>
<p><strong>Data.</strong> The 918-patient heart-failure table (Kaggle "Heart Failure Prediction", fedesoriano, 2021:
Cleveland, Hungarian, Switzerland, Long Beach VA and Statlog cohorts combined). Stratified split: {{ metrics.n_train }} training,
{{ metrics.n_calibration }} calibration, {{ metrics.n_test }} held-out test patients. Preprocessing (clean protocol): cholesterol and
resting blood pressure of 0 are treated as missing and imputed with training medians, nominal features one-hot encoded, scaled with
training minima and maxima.</p>
<p><strong>Measured on the held-out test patients.</strong> Accuracy <span id="card-accuracy">{{ '%.1f' % (metrics.test_accuracy * 100) }} %</span>,
ROC-AUC {{ '%.3f' % metrics.test_roc_auc }}. Split-conformal (LAC) coverage:
{% for lev in levels %}{{ (lev * 100) | round(0) | int }} % level: {{ '%.1f' % (metrics.coverage['%g' % lev] * 100) }} %{% if not loop.last %}; {% endif %}{% endfor %}.</p>
<p><strong>Clean protocol, full training (qnn's experiments).</strong> Repeated stratified 10-fold cross-validation of the same
architecture trained for up to 100 epochs: 86.06 &plusmn; 3.96 % accuracy, ROC-AUC 0.930 &plusmn; 0.029, not significantly different from
CatBoost (87.56 &plusmn; 3.27 %) (<code>experiments/kacq/results/cv_table_clean.md</code>). The paper's 92 % was obtained by selecting
the checkpoint on its test split and is not reproduced.</p>
<p><strong>Known limits.</strong> 918 patients from five old cohorts; one split and a short training run, so the figures above carry a
sampling error of several points; the coverage guarantee is marginal (over patients like these, exchangeable with the calibration data),
not a per-patient guarantee, and does not hold for other populations or other measurement practices; the explanation is a
sampled Kernel SHAP approximation with a small background. <strong>Research demo, not a medical device.</strong></p>
</section>
</body></html>
"""


def _chart(items: list[tuple[str, object, float]]) -> str:
    """Horizontal bar chart (inline SVG) of signed attributions."""
    width, bar_h, left, mid = 560, 22, 230, 395
    top = max(abs(v) for _, _, v in items) or 1.0
    scale = (width - mid - 10) / top
    rows = []
    for i, (name, value, v) in enumerate(items):
        y = 4 + i * bar_h
        w = abs(v) * scale
        x = mid if v >= 0 else mid - w
        color = "#c62828" if v >= 0 else "#1565c0"
        shown = f"{value:g}" if isinstance(value, (int, float)) else str(value)
        rows.append(
            f'<text x="{left - 6}" y="{y + 15}" text-anchor="end" font-size="13">{name} = {shown}</text>'
            f'<rect class="shap-bar" data-feature="{name}" data-value="{v:.6f}" x="{x:.1f}" y="{y + 3}" '
            f'width="{max(w, 1):.1f}" height="{bar_h - 6}" fill="{color}"></rect>'
            f'<text x="{(x + w + 4) if v >= 0 else (x - 4):.1f}" y="{y + 15}" font-size="11" '
            f'text-anchor="{"start" if v >= 0 else "end"}">{v:+.3f}</text>'
        )
    h = 8 + len(items) * bar_h
    return (f'<svg id="explanation" role="img" aria-label="feature contributions" width="{width}" height="{h}" '
            f'xmlns="http://www.w3.org/2000/svg"><line x1="{mid}" y1="0" x2="{mid}" y2="{h}" stroke="#888"/>'
            + "".join(rows).replace("<text", '<text fill="#222"') + "</svg>")


def create_app(model: HeartDemoModel, *, explain_samples: int = 64) -> Flask:
    """The Flask app of the demo page for ``model``."""
    app = Flask("qnn.apps.heart")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    lock = threading.Lock()  # one model, one request at a time
    defaults = {f.name: f.example for f in FIELDS}

    def page(status=200, **kw):
        ctx = dict(fields=FIELDS, levels=LEVELS, level=0.9, values=defaults, errors={}, pred=None, chart="",
                   base=0.0, failure=None, metrics=model.metrics, settings=model.settings)
        ctx.update(kw)
        return render_template_string(_PAGE, **ctx), status

    @app.get("/")
    def index():
        return page()

    @app.post("/")
    def predict():
        values = {f.name: request.form.get(f.name, "") for f in FIELDS}
        patient, errors = parse_form(request.form)
        level = None
        try:
            level = float(request.form.get("level", ""))
        except ValueError:
            pass
        if level not in LEVELS:
            errors["level"] = f"confidence level must be one of {list(LEVELS)}; got {request.form.get('level', '')[:20]!r}"
            level = 0.9
        if errors:
            return page(400, values=values, errors=errors, level=level)
        with lock:
            (pred,) = model.predict(patient, level)
            items, base = model.explain(patient, nsamples=explain_samples)
        return page(values=values, level=level, pred=pred, chart=_chart(items), base=base)

    @app.errorhandler(Exception)
    def failure(exc):
        from werkzeug.exceptions import HTTPException

        if isinstance(exc, HTTPException):
            return page(exc.code or 500, failure=f"{exc.code} {exc.name}: {exc.description}")
        return page(500, failure=f"The prediction failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")

    return app


def serve(model: HeartDemoModel, *, host: str = "127.0.0.1", port: int = 8000, ready=None) -> None:
    """Serve the page until interrupted (Ctrl-C); ``ready(url)`` is called once it listens."""
    from werkzeug.serving import make_server

    server = make_server(host, port, create_app(model), threaded=True)
    url = f"http://{host}:{server.server_port}/"
    if ready is not None:
        ready(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
