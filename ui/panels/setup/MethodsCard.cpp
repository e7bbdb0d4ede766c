#include "ui/panels/setup/MethodsCard.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QLabel>
#include <QLineEdit>
#include <QLocale>
#include <QSpinBox>
#include <QVBoxLayout>
#include <algorithm>
#include <climits>
#include <cmath>

#include "core/methods/Method.h"

namespace lathe::ui {
namespace {

// Shows values as the shortest round-trip text (1e-08, 0.001, 0.9) instead of fixed decimals.
class SchemaDoubleSpinBox : public QDoubleSpinBox {
 public:
  using QDoubleSpinBox::QDoubleSpinBox;
  QString textFromValue(double v) const override { return QString::number(v, 'g', 10); }
  double valueFromText(const QString& text) const override { return text.toDouble(); }
  QValidator::State validate(QString& text, int&) const override {
    bool ok = false;
    const double v = text.toDouble(&ok);
    if (text.isEmpty() || text == "-" || text.endsWith('e') || text.endsWith("e-"))
      return QValidator::Intermediate;
    if (!ok) return QValidator::Invalid;
    return v >= minimum() && v <= maximum() ? QValidator::Acceptable : QValidator::Intermediate;
  }
};

QWidget* paramWidget(const methods::ParamSpec& p, QWidget* parent) {
  using methods::ParamType;
  switch (p.type) {
    case ParamType::integer: {
      auto* s = new QSpinBox(parent);
      s->setRange(static_cast<int>(std::max<double>(p.min, INT_MIN)),
                  static_cast<int>(std::min<double>(p.max, INT_MAX)));
      if (!p.unit.empty()) s->setSuffix(" " + QString::fromStdString(p.unit));
      return s;
    }
    case ParamType::number: {
      auto* s = new SchemaDoubleSpinBox(parent);
      s->setDecimals(12);
      s->setRange(std::max(p.min, -1e12), std::min(p.max, 1e12));
      const double def = p.default_value.is_number() ? p.default_value.get<double>() : 0.0;
      s->setSingleStep(p.log_scale || def == 0
                           ? std::max(1e-6, std::abs(def) / 10)
                           : std::pow(10, std::floor(std::log10(std::abs(def)))) / 10);
      return s;
    }
    case ParamType::boolean: return new QCheckBox(parent);
    case ParamType::choice: {
      auto* c = new QComboBox(parent);
      for (const auto& choice : p.choices) c->addItem(QString::fromStdString(choice));
      return c;
    }
    case ParamType::string: return new QLineEdit(parent);
  }
  return nullptr;
}

void setValue(QWidget* w, const nlohmann::json& v) {
  const QSignalBlocker block(w);
  if (auto* s = qobject_cast<QSpinBox*>(w)) {
    if (v.is_number()) s->setValue(v.get<int>());
  } else if (auto* d = qobject_cast<QDoubleSpinBox*>(w)) {
    if (v.is_number()) d->setValue(v.get<double>());
  } else if (auto* c = qobject_cast<QCheckBox*>(w)) {
    if (v.is_boolean()) c->setChecked(v.get<bool>());
  } else if (auto* cb = qobject_cast<QComboBox*>(w)) {
    if (v.is_string()) cb->setCurrentText(QString::fromStdString(v.get<std::string>()));
  } else if (auto* e = qobject_cast<QLineEdit*>(w)) {
    if (v.is_string()) e->setText(QString::fromStdString(v.get<std::string>()));
  }
}

nlohmann::json valueOf(const QWidget* w) {
  if (auto* s = qobject_cast<const QSpinBox*>(w)) return s->value();
  if (auto* d = qobject_cast<const QDoubleSpinBox*>(w)) return d->value();
  if (auto* c = qobject_cast<const QCheckBox*>(w)) return c->isChecked();
  if (auto* cb = qobject_cast<const QComboBox*>(w)) return cb->currentText().toStdString();
  if (auto* e = qobject_cast<const QLineEdit*>(w)) return e->text().toStdString();
  return nullptr;
}

}  // namespace

MethodsCard::MethodsCard(QWidget* parent) : QWidget(parent) {
  setObjectName("MethodsCard");
  auto* layout = new QVBoxLayout(this);
  layout->setContentsMargins(0, 0, 0, 0);
  QString category;
  for (const methods::MethodInfo* info : methods::MethodRegistry::instance().all()) {
    const QString cat = QString::fromStdString(info->category);
    if (cat != category) {
      category = cat;
      auto* header = new QLabel(QString("<b>%1</b>").arg(cat.left(1).toUpper() + cat.mid(1)), this);
      layout->addWidget(header);
    }
    Panel panel;
    panel.box = new QGroupBox(QString::fromStdString(info->title), this);
    panel.box->setObjectName(QString("method.%1").arg(QString::fromStdString(info->name)));
    panel.box->setCheckable(true);
    panel.box->setChecked(false);
    panel.box->setToolTip(QString::fromStdString(info->summary));
    auto* form = new QFormLayout(panel.box);
    auto* summary = new QLabel(QString::fromStdString(info->summary), panel.box);
    summary->setWordWrap(true);
    summary->setStyleSheet("color: palette(mid);");
    form->addRow(summary);
    for (const methods::ParamSpec& p : info->params) {
      QWidget* w = paramWidget(p, panel.box);
      w->setObjectName(
          QString("method.%1.%2")
              .arg(QString::fromStdString(info->name), QString::fromStdString(p.name)));
      QString tip = QString::fromStdString(p.help);
      if (p.type == methods::ParamType::number || p.type == methods::ParamType::integer)
        tip += QString(" [%1, %2]").arg(p.min).arg(p.max);
      w->setToolTip(tip);
      setValue(w, p.default_value);
      QString label = QString::fromStdString(p.name);
      if (!p.unit.empty() && p.type != methods::ParamType::integer)
        label += QString(" (%1)").arg(QString::fromStdString(p.unit));
      auto* l = new QLabel(label + ":", panel.box);
      l->setToolTip(tip);
      form->addRow(l, w);
      if (auto* s = qobject_cast<QSpinBox*>(w))
        connect(s, &QSpinBox::valueChanged, this, &MethodsCard::update);
      else if (auto* d = qobject_cast<QDoubleSpinBox*>(w))
        connect(d, &QDoubleSpinBox::valueChanged, this, &MethodsCard::update);
      else if (auto* c = qobject_cast<QCheckBox*>(w))
        connect(c, &QCheckBox::toggled, this, &MethodsCard::update);
      else if (auto* cb = qobject_cast<QComboBox*>(w))
        connect(cb, &QComboBox::currentIndexChanged, this, &MethodsCard::update);
      else if (auto* e = qobject_cast<QLineEdit*>(w))
        connect(e, &QLineEdit::textChanged, this, &MethodsCard::update);
      panel.params[p.name] = w;
    }
    connect(panel.box, &QGroupBox::toggled, this, &MethodsCard::update);
    layout->addWidget(panel.box);
    panels_.emplace_back(info->name, panel);
  }
  conflict_label_ = new QLabel(this);
  conflict_label_->setObjectName("MethodConflict");
  conflict_label_->setWordWrap(true);
  conflict_label_->setStyleSheet("color: #b9770e; font-weight: bold;");
  conflict_label_->hide();
  layout->addWidget(conflict_label_);
  layout->addStretch(1);
}

void MethodsCard::setMethods(const nlohmann::json& methods) {
  for (auto& [name, panel] : panels_) {
    const QSignalBlocker block(panel.box);
    panel.box->setChecked(false);
  }
  if (methods.is_array())
    for (const auto& m : methods) {
      const std::string name = m.value("name", "");
      for (auto& [pname, panel] : panels_) {
        if (pname != name) continue;
        const QSignalBlocker block(panel.box);
        panel.box->setChecked(true);
        for (auto& [key, w] : panel.params)
          if (m.contains(key)) setValue(w, m[key]);
      }
    }
  update();
}

nlohmann::json MethodsCard::methods() const {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [name, panel] : panels_) {
    if (!panel.box->isChecked()) continue;
    nlohmann::json m = {{"name", name}};
    for (const auto& [key, w] : panel.params) m[key] = valueOf(w);
    out.push_back(m);
  }
  return out;
}

void MethodsCard::update() {
  std::vector<std::string> names;
  for (const auto& [name, panel] : panels_)
    if (panel.box->isChecked()) names.push_back(name);
  conflict_.clear();
  try {
    methods::MethodRegistry::instance().checkConflicts(names, "methods");
  } catch (const std::exception& e) {
    conflict_ = QString::fromUtf8(e.what());
  }
  conflict_label_->setText(conflict_.isEmpty() ? QString() : tr("⚠ %1").arg(conflict_));
  conflict_label_->setVisible(!conflict_.isEmpty());
  Q_EMIT changed();
}

}  // namespace lathe::ui
