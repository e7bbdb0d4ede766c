// Setup tab: where a run is configured. This first version shows the build's engine and the
// default experiment's data set; the model, data, method and training cards come with the
// run engine (core/run).
#pragma once

#include <QWidget>

namespace lathe::ui {

class SetupPanel : public QWidget {
  Q_OBJECT

 public:
  explicit SetupPanel(QWidget* parent = nullptr);
};

}  // namespace lathe::ui
