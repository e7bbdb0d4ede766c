// Method panels of the Setup tab, generated from the MethodRegistry schemas: one checkable
// group per method, one widget per parameter (number -> spin box with the schema's range,
// choice -> combo box, boolean -> check box, string -> line edit), the help text as tooltip.
// Nothing here knows a method by name: a new method in core/methods appears by itself.
#pragma once

#include <QWidget>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

class QGroupBox;
class QLabel;

namespace lathe::ui {

class MethodsCard : public QWidget {
  Q_OBJECT

 public:
  explicit MethodsCard(QWidget* parent = nullptr);

  // Checks the listed methods (and fills their parameters); unchecks the others.
  void setMethods(const nlohmann::json& methods);
  // The checked methods as config entries, in registry order.
  nlohmann::json methods() const;
  // Why the checked methods cannot run together; empty when they can.
  QString conflict() const { return conflict_; }

 Q_SIGNALS:
  void changed();

 private:
  void update();
  struct Panel {
    QGroupBox* box = nullptr;
    std::map<std::string, QWidget*> params;
  };
  std::vector<std::pair<std::string, Panel>> panels_;  // registry order
  QLabel* conflict_label_ = nullptr;
  QString conflict_;
};

}  // namespace lathe::ui
