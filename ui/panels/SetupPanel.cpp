#include "ui/panels/SetupPanel.h"

#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QLabel>
#include <QVBoxLayout>

#include "core/base/BuildInfo.h"

namespace lathe::ui {

SetupPanel::SetupPanel(QWidget* parent) : QWidget(parent) {
  setObjectName("SetupPanel");
  auto* layout = new QVBoxLayout(this);

  auto* engine = new QGroupBox(tr("Engine"), this);
  auto* engine_form = new QFormLayout(engine);
  for (const auto& [name, value] : lathe::capabilities())
    engine_form->addRow(QString::fromStdString(name) + ":",
                        new QLabel(QString::fromStdString(value)));
  layout->addWidget(engine);

  auto* data = new QGroupBox(tr("Default experiment data"), this);
  auto* data_form = new QFormLayout(data);
  const QString fashion = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz";
  const bool found = QFileInfo::exists(fashion);
  auto* status = new QLabel(found ? tr("Fashion-MNIST found in /usr/share/datasets/fashion-mnist")
                                  : tr("Fashion-MNIST not installed (scripts/lathe setup installs "
                                       "dataset-fashion-mnist)"));
  status->setObjectName("FashionStatus");
  data_form->addRow(tr("Fashion-MNIST:"), status);
  layout->addWidget(data);
  layout->addStretch(1);
}

}  // namespace lathe::ui
