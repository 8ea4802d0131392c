"""natasha's Russian NER (natasha 1.6.0 with slovnet 0.6.0 and navec 0.10.0, MIT: `natasha/data/model/
slovnet_ner_news_v1.tar`, 2.4 MB, and `natasha/data/emb/navec_news_v1_1B_250K_300d_100q.tar`, 27 MB, in natasha's
34 MB wheel): a PyTorch model its author packs as numpy arrays and runs in numpy (`slovnet.exec.model.NER`). A word's
navec vector (250 002 words, product-quantized: 100 sub-vectors of 3, 256 centroids each) beside a word-shape
embedding (66 × 30), three Conv1d (330 → 256 → 128 → 64, kernel 3) each with ReLU and BatchNorm, Linear 64 → 8 tags'
emissions, decoded by a CRF (Viterbi over its 8 × 8 transitions). Ported here to torch as slovnet's arrays say
(`model()`: its BatchNorm's packed `std` is sqrt(var + 1e-5), read back as running_var; one sentence a batch, so
the pad mask is empty), checked equal to slovnet's numpy on every sentence (`tests/trained/test_natasha.py`).

    pip install --no-deps natasha==1.6.0 slovnet==0.6.0 navec==0.10.0 razdel==0.5.0   # their files only

Decision (`tag_metric`): the share of words whose tag (O, B-PER, I-PER, B-LOC, …; the CRF's Viterbi path over the
emissions, as `NERInfer` decodes them) is the reference's. Samples (`feeds()`): Russian news sentences written here,
tokenized and encoded by slovnet's own `TagEncoder`; `CALIB` the even ones."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from tests.trained.corpus import wheel_file

NER_TAR = "natasha/data/model/slovnet_ner_news_v1.tar"
NAVEC_TAR = "natasha/data/emb/navec_news_v1_1B_250K_300d_100q.tar"
EPS = 1e-5  # torch's BatchNorm1d eps the packed std folds in
SENTENCES = (
    "Президент России Владимир Путин встретился в Москве с главой компании Газпром Алексеем Миллером.",
    "Мэр Санкт-Петербурга Александр Беглов открыл новую станцию метро на Васильевском острове.",
    "Сбербанк и ВТБ снизили ставки по ипотеке, сообщил Центральный банк России.",
    "Писатель Лев Толстой родился в Ясной Поляне под Тулой в 1828 году.",
    "Футбольный клуб Спартак обыграл ЦСКА на стадионе в Лужниках со счётом два один.",
    "Министр иностранных дел Сергей Лавров прилетел в Париж на переговоры с Эммануэлем Макроном.",
    "Компания Яндекс открыла офис в Казани, где будут работать триста инженеров.",
    "Учёные Московского государственного университета имени Ломоносова запустили спутник.",
    "Анна Петрова из Новосибирска выиграла чемпионат Европы по лёгкой атлетике в Берлине.",
    "Правительство Татарстана выделило деньги на ремонт дорог между Набережными Челнами и Елабугой.",
    "Депутат Государственной думы Иван Сидоров предложил запретить продажу алкоголя ночью.",
    "Автоваз начнёт выпуск новой модели Лады на заводе в Тольятти весной.",
    "На Байкале туристы из Китая спасли рыбака, провалившегося под лёд.",
    "Директор Эрмитажа Михаил Пиотровский рассказал о выставке картин Рембрандта.",
    "Аэрофлот возобновил рейсы из Екатеринбурга во Владивосток и Хабаровск.",
    "Борис Гребенщиков и группа Аквариум выступят в Ярославле в субботу.",
    "Роскосмос сообщил, что космонавт Олег Кононенко вернулся с Международной космической станции.",
    "Жители Калининграда пожаловались губернатору Антону Алиханову на плохую работу автобусов.",
    "Генеральный директор Лукойла Вагит Алекперов посетил нефтяное месторождение в Западной Сибири.",
    "В Нижнем Новгороде прошёл фестиваль, который организовал фонд Потанина.",
    "Тренер сборной Станислав Черчесов объявил состав команды на матч с Германией.",
    "Мария Захарова прокомментировала заявление Государственного департамента США.",
    "Суд Краснодара арестовал бывшего главу администрации Сочи Дмитрия Иванова.",
    "Художник Илья Репин написал картину Бурлаки на Волге, которая хранится в Русском музее.",
    "Ростелеком и МТС договорились о совместном строительстве сетей в Мурманской области.",
    "Мэрия Москвы объявила, что Сергей Собянин примет участие в форуме в Сколково.",
    "Певица Алла Пугачёва уехала из России в Израиль вместе с Максимом Галкиным.",
    "Банк Тинькофф сменил название, сообщил основатель Олег Тиньков в Лондоне.",
    "В Екатеринбурге открылся памятник Борису Ельцину рядом с Уральским федеральным университетом.",
    "Газета Коммерсантъ написала, что Росатом построит станцию в Египте и Турции.",
    "Академик Андрей Сахаров был сослан в Горький, где жил под надзором КГБ.",
    "Игорь Сечин возглавил совет директоров Роснефти после встречи в Кремле.",
)
CALIB = tuple(range(0, len(SENTENCES), 2))  # the even sentences calibrate; the odd ones are held out


@lru_cache(maxsize=1)
def slovnet_ner():
    """slovnet's own NER (numpy) with natasha's navec injected: `api.NER`."""
    from navec import Navec
    from slovnet import NER

    return NER.load(wheel_file("natasha", NER_TAR)).navec(Navec.load(wheel_file("natasha", NAVEC_TAR)))


def feeds() -> list[dict[str, np.ndarray]]:
    """Each sentence's `word_id` and `shape_id` (1, words), as slovnet's `TagEncoder` encodes them."""
    from slovnet.exec.infer import text_words

    ner, out = slovnet_ner(), []
    for s in SENTENCES:
        batch = next(iter(ner.infer.encoder([text_words(s)])))
        out.append({"word_id": np.asarray(batch.word_id, np.int64), "shape_id": np.asarray(batch.shape_id, np.int64)})
    return out


def numpy_emissions(feed: dict[str, np.ndarray]) -> np.ndarray:
    """slovnet's numpy model's emissions (1, words, 8) for one feed."""
    pad = np.zeros(feed["word_id"].shape, bool)
    return slovnet_ner().infer.model(feed["word_id"], feed["shape_id"], pad)


def encoder(net):
    """slovnet's word-shape embedding and CNN encoder (`net.emb`, `net.encoder`) in torch: (word_id, shape_id) →
    (1, words, 64), as the NER, morph and syntax networks share it."""
    import torch
    from torch import nn

    def t(a) -> torch.Tensor:
        return torch.from_numpy(np.array(a))  # a copy: slovnet's arrays are read-only

    class Navec(nn.Module):
        """navec's product-quantized lookup: each word's 100 centroid ids, each id a 3-vector of its sub-space."""

        def __init__(self, word):
            super().__init__()
            qdim, centroids, chunk = word.codes.array.shape
            self.register_buffer("indexes", t(word.indexes.array))  # (words, 100) uint8
            self.register_buffer("codes", t(word.codes.array.reshape(qdim * centroids, chunk)))
            self.register_buffer("offsets", torch.arange(qdim) * centroids)
            self.dim = qdim * chunk

        def forward(self, word_id):
            ids = self.indexes[word_id].long() + self.offsets
            return self.codes[ids].reshape(*word_id.shape, self.dim)

    class Layer(nn.Module):
        def __init__(self, layer):
            super().__init__()
            filters, dim, kernel = layer.conv.weight.shape
            self.conv = nn.Conv1d(dim, filters, kernel, padding=layer.conv.padding)
            self.relu = nn.ReLU()
            self.norm = nn.BatchNorm1d(filters, eps=EPS)
            self.conv.weight.data, self.conv.bias.data = t(layer.conv.weight.array), t(layer.conv.bias.array)
            std = layer.norm.std.array.astype(np.float64)
            self.norm.running_mean.data, self.norm.running_var.data = t(layer.norm.mean.array), t(
                np.maximum(std * std - EPS, 0).astype(np.float32))
            self.norm.weight.data, self.norm.bias.data = t(layer.norm.weight.array), t(layer.norm.bias.array)

        def forward(self, x):
            return self.norm(self.relu(self.conv(x)))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = Navec(net.emb.word)
            self.shape = nn.Embedding.from_pretrained(t(net.emb.shape.weight.array))
            self.layers = nn.Sequential(*[Layer(x) for x in net.encoder.layers])

        def forward(self, word_id, shape_id):
            x = torch.cat([self.word(word_id), self.shape(shape_id)], -1)
            return self.layers(x.transpose(1, 2)).transpose(1, 2)

    return Encoder()


def linear(proj):
    """slovnet's `Linear` (its weight stored in × out) as torch's."""
    import torch
    from torch import nn

    out = nn.Linear(*proj.weight.shape)
    out.weight.data = torch.from_numpy(np.array(proj.weight.array.T))
    out.bias.data = torch.from_numpy(np.array(proj.bias.array))
    return out


def model():
    """slovnet's NER network in torch, with natasha's weights, in eval mode: (word_id, shape_id) → emissions."""
    from torch import nn

    net = slovnet_ner().infer.model

    class NER(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = encoder(net)
            self.proj = linear(net.head.proj)

        def forward(self, word_id, shape_id):
            return self.proj(self.encoder(word_id, shape_id))

    return NER().eval()


@lru_cache(maxsize=1)
def _transitions() -> np.ndarray:
    return np.asarray(slovnet_ner().infer.model.head.crf.transitions.array, np.float64)


def tags(emissions: np.ndarray) -> np.ndarray:
    """The CRF's Viterbi path over one sentence's emissions (1, words, 8), as slovnet's `CRF.decode` finds it."""
    e, trans = np.asarray(emissions, np.float64)[0], _transitions()
    score, history = e[0], []
    for row in e[1:]:
        s = score[:, None] + trans + row[None, :]
        history.append(s.argmax(0))
        score = s.max(0)
    path = [int(score.argmax())]
    for back in reversed(history):
        path.append(int(back[path[-1]]))
    return np.array(path[::-1])


def tag_metric(outputs, reference, label=None) -> float:
    """The share of words whose tag (the CRF's path) is the reference's."""
    (got,), (ref,) = outputs.values(), reference.values()
    return float(np.mean(tags(got) == tags(ref)))
